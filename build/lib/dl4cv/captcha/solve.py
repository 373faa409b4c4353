"""Solve whole captchas: segment, preprocess each digit as in training, classify, join.

A captcha counts as solved only when all its digits are right; one that does not segment
into the expected number of digits is a failure (the book's script would crash or guess).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from dl4cv.captcha.segment import Box, SegmentationError, crop_digit, find_digits
from dl4cv.config import CaptchaSegment, ImageSpec
from dl4cv.preprocessing import AspectAwarePreprocessor, ImageToArrayPreprocessor
from dl4cv.training.inputs import scale_pixels

Predict = Callable[[np.ndarray], np.ndarray]  # float32 batch in [0, 1] -> class probabilities


@dataclass(frozen=True)
class Solution:
    """The text read from one captcha (None if it did not segment), with each digit's box."""

    text: str | None
    boxes: tuple[Box, ...] = ()
    error: str = ""


class CaptchaSolver:
    def __init__(
        self,
        predict: Predict,
        classes: Sequence[str],
        segment: CaptchaSegment,
        image: ImageSpec,
        interpolation: str = "area",
    ) -> None:
        self.predict = predict
        self.classes = list(classes)
        self.segment = segment
        self.resize = AspectAwarePreprocessor(image.width, image.height, interpolation)
        self.to_array = ImageToArrayPreprocessor()

    def digits(self, image: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """The digit crops of one captcha, as the network was trained on them (uint8)."""
        return np.stack(
            [
                self.to_array.preprocess(self.resize.preprocess(crop_digit(image, b, self.segment)))
                for b in boxes
            ]
        )

    def solve(self, images: Sequence[np.ndarray]) -> list[Solution]:
        """Read every captcha; all digits go through the network in one batch."""
        found: list[tuple[Box, ...] | str] = []
        batches = []
        for image in images:
            try:
                boxes = tuple(find_digits(image, self.segment))
            except SegmentationError as exc:
                found.append(str(exc))
                continue
            found.append(boxes)
            batches.append(self.digits(image, boxes))
        if batches:
            probs = np.asarray(self.predict(scale_pixels(np.concatenate(batches))))
            predicted = iter(probs.argmax(axis=1).tolist())
        solutions = []
        for item in found:
            if isinstance(item, str):
                solutions.append(Solution(None, (), item))
            else:
                text = "".join(self.classes[next(predicted)] for _ in item)
                solutions.append(Solution(text, item))
        return solutions


def draw_grid(
    images: Sequence[np.ndarray],
    truths: Sequence[str],
    solutions: Sequence[Solution],
    columns: int = 4,
    scale: int = 2,
) -> np.ndarray:
    """The book's picture of a solved captcha, tiled: each digit boxed and labelled with its
    prediction (green right, red wrong), the truth and the reading under each captcha."""
    tiles = []
    for image, truth, solution in zip(images, truths, solutions, strict=True):
        big = cv2.resize(_bgr(image), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        tile = cv2.copyMakeBorder(big, 24, 26, 6, 6, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        for i, box in enumerate(solution.boxes):
            guess = solution.text[i] if solution.text else "?"
            ok = i < len(truth) and guess == truth[i]
            colour = (0, 150, 0) if ok else (0, 0, 220)
            x, y = box.x * scale + 6, box.y * scale + 24
            cv2.rectangle(
                tile, (x - 2, y - 2), (x + box.w * scale + 1, y + box.h * scale + 1), colour, 1
            )
            cv2.putText(tile, guess, (x, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2, cv2.LINE_AA)
        right = solution.text == truth
        caption = f"{truth} -> {solution.text or 'no split'}"
        cv2.putText(
            tile,
            caption,
            (6, tile.shape[0] - 8),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (0, 120, 0) if right else (0, 0, 200),
            1,
            cv2.LINE_AA,
        )
        tiles.append(tile)
    if not tiles:
        return np.full((40, 200, 3), 255, np.uint8)
    height = max(t.shape[0] for t in tiles)
    width = max(t.shape[1] for t in tiles)
    tiles = [
        cv2.copyMakeBorder(
            t, 0, height - t.shape[0], 0, width - t.shape[1], cv2.BORDER_CONSTANT, value=(255,) * 3
        )
        for t in tiles
    ]
    blank = np.full_like(tiles[0], 255)
    while len(tiles) % columns:
        tiles.append(blank)
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    return np.vstack(rows)


def _bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    return image

"""AspectAwarePreprocessor: resize keeping the aspect ratio, then pad to the target size.

A digit crop is tall and narrow; SimplePreprocessor would stretch it to a square. The book's
captcha helper (ch 21) instead resizes the larger side to the target, pads the other side
(replicating the border, so the padding looks like background), and finishes with a plain
resize that absorbs the one-pixel rounding of an odd padding. (The Practitioner Bundle's class
of the same name crops instead of padding; the case study here needs the padding.)
"""

from __future__ import annotations

import cv2
import numpy as np

from dl4cv.preprocessing.simple import INTERPOLATIONS, check_target


class AspectAwarePreprocessor:
    def __init__(self, width: int, height: int, interpolation: str = "area") -> None:
        check_target(width, height, interpolation)
        self.width = width
        self.height = height
        self.interpolation = interpolation

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        if h < 1 or w < 1:
            raise ValueError(f"cannot resize an empty image of shape {image.shape}")
        # The side that hits the target first sets the scale (the larger side for a square one).
        scale = min(self.width / w, self.height / h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        resized = cv2.resize(image, size, interpolation=INTERPOLATIONS[self.interpolation])
        pad_x, pad_y = (self.width - size[0]) // 2, (self.height - size[1]) // 2
        padded = cv2.copyMakeBorder(resized, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_REPLICATE)
        if padded.shape[:2] != (self.height, self.width):
            padded = cv2.resize(
                padded, (self.width, self.height), interpolation=INTERPOLATIONS[self.interpolation]
            )
        return padded

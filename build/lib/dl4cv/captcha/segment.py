"""Split a captcha into its digits the book's way, and crop each digit.

Pad the image (a digit touching the border still gets a closed contour), threshold it with
Otsu (dark digits become white), keep the `digits` largest external contours, left to right.
The book trusts those contours blindly; here a captcha whose contours cannot be `digits`
separate digits (too few, or one kept contour much shorter than the others: a speck or a
broken piece, so two digits merged or one split) raises SegmentationError with the reason,
and is reported instead of guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dl4cv.config import CaptchaSegment

BOOK = CaptchaSegment()  # the book's settings: 4 digits, pad 8, margin 5


class SegmentationError(ValueError):
    """The captcha does not split into the expected number of digits."""


@dataclass(frozen=True)
class Box:
    """A digit's bounding box in the captcha's own pixel coordinates."""

    x: int
    y: int
    w: int
    h: int


def to_gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        return cv2.cvtColor(image, code)
    raise ValueError(f"expected a grayscale or BGR image, got shape {image.shape}")


def find_digits(image: np.ndarray, spec: CaptchaSegment = BOOK) -> list[Box]:
    """The boxes of the captcha's `spec.digits` digits, left to right."""
    gray = to_gray(image)
    pad = spec.pad
    padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    _, thresh = cv2.threshold(padded, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    contours, _ = cv2.findContours(thresh, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if len(contours) < spec.digits:
        raise SegmentationError(f"found {len(contours)} contours, expected {spec.digits} digits")
    largest = sorted(contours, key=cv2.contourArea, reverse=True)[: spec.digits]
    height, width = gray.shape
    boxes = []
    for x, y, w, h in map(cv2.boundingRect, largest):
        # back to the captcha's coordinates; ink touching an edge was smeared into the padding
        x0, y0 = max(x - pad, 0), max(y - pad, 0)
        x1, y1 = min(x - pad + w, width), min(y - pad + h, height)
        boxes.append(Box(x0, y0, x1 - x0, y1 - y0))
    tallest = max(b.h for b in boxes)
    short = [b for b in boxes if b.h < spec.min_height_ratio * tallest]
    if short:
        raise SegmentationError(
            f"{len(short)} of the {spec.digits} largest contours are under "
            f"{spec.min_height_ratio:.0%} of the tallest digit's height (digits merged or "
            "broken apart)"
        )
    return sorted(boxes, key=lambda b: b.x)


def crop_digit(image: np.ndarray, box: Box, spec: CaptchaSegment = BOOK) -> np.ndarray:
    """The digit in `box` with `spec.margin` pixels around it, grayscale (the book's ROI)."""
    gray = to_gray(image)
    pad = max(spec.pad, spec.margin)
    padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    top, left = box.y + pad - spec.margin, box.x + pad - spec.margin
    bottom, right = box.y + pad + box.h + spec.margin, box.x + pad + box.w + spec.margin
    if top < 0 or left < 0 or bottom > padded.shape[0] or right > padded.shape[1] or box.w < 1:
        raise SegmentationError(f"box {box} lies outside the {gray.shape[1]}x{gray.shape[0]} image")
    return padded[top:bottom, left:right].copy()

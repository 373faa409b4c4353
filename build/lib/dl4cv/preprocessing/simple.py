"""SimplePreprocessor: resize to a fixed size, ignoring the aspect ratio (the book's ch 7)."""

from __future__ import annotations

import cv2
import numpy as np

INTERPOLATIONS = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}


def check_target(width: int, height: int, interpolation: str) -> None:
    """The resize target every preprocessor here validates the same way."""
    if width < 1 or height < 1:
        raise ValueError(f"width and height must be >= 1, got {width}x{height}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}"
        )


class SimplePreprocessor:
    def __init__(self, width: int, height: int, interpolation: str = "area") -> None:
        check_target(width, height, interpolation)
        self.width = width
        self.height = height
        self.interpolation = interpolation

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        if image.shape[1] == self.width and image.shape[0] == self.height:
            return image
        return cv2.resize(
            image, (self.width, self.height), interpolation=INTERPOLATIONS[self.interpolation]
        )

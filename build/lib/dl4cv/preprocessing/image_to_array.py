"""ImageToArrayPreprocessor: give every image an explicit channel axis (channels last).

Keras 3 models take (height, width, channels); OpenCV drops the axis for grayscale images.
"""

from __future__ import annotations

import numpy as np


class ImageToArrayPreprocessor:
    def preprocess(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 2:
            return image[:, :, np.newaxis]
        if image.ndim == 3:
            return image
        raise ValueError(f"expected an image of 2 or 3 dimensions, got shape {image.shape}")

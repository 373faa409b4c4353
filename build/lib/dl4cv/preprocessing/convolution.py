"""Ch 11: a hand-written 2-D convolution, checked against OpenCV's `cv2.filter2D`.

Two differences between "convolve" and `cv2.filter2D` have to be matched before the outputs can
be compared exactly:

* `cv2.filter2D` computes a *correlation* (the kernel is not flipped). `convolve` computes a
  true convolution (the kernel rotated by 180 degrees), so `compare` hands OpenCV the rotated
  kernel. For the symmetric kernels (blurs, sharpen, Laplacian) this changes nothing; for the
  antisymmetric ones (Sobel x/y, emboss) a convolution is the negated correlation, so without
  the rotation their responses would have opposite signs.
* `cv2.filter2D` pads with BORDER_REFLECT_101 by default; `convolve` replicates the edge pixels
  (BORDER_REPLICATE), so `compare` passes that border explicitly.

Both raw responses are float64 (`cv2.CV_64F` output), then mapped to uint8 by the same
`to_uint8` (round, clip to [0, 255]). The raw responses still differ slightly: OpenCV filters
large kernels (the 21x21 blur) through a float32 DFT, about 4e-6 off on a 0-255 image. That
cannot flip a rounding: on an integer image a box blur's value is k/49 or k/441, never closer than
1e-3 to a .5 tie, and the integer kernels give integers. So the uint8 images are identical; the
tests also check OpenCV's own uint8 output (`ddepth=-1`, saturating) is within 1 grey level.
"""

from __future__ import annotations

import cv2
import numpy as np


def _box(size: int) -> np.ndarray:
    return np.full((size, size), 1.0 / (size * size))


KERNELS: dict[str, np.ndarray] = {
    "small_blur": _box(7),
    "large_blur": _box(21),
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float64),
    "laplacian": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64),
    "sobel_x": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64),
    "sobel_y": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64),
    "emboss": np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64),
}


def check_kernel(kernel: np.ndarray) -> np.ndarray:
    """The kernel as float64, or ValueError: 2-D, odd sides (a centre pixel), finite values."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2:
        raise ValueError(f"convolution kernel must be 2-D, got shape {k.shape}")
    if k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise ValueError(
            f"convolution kernel must have odd height and width (a centre pixel), got {k.shape}"
        )
    if not np.all(np.isfinite(k)):
        raise ValueError("convolution kernel has NaN or infinite values")
    return k


def convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """True 2-D convolution of a grayscale image, edges replicated; float64, same shape.

    Each output pixel is sum over (i, j) of kernel[i, j] * image[y + c - i, x + c - j]
    (c the kernel centre). Written as one shifted-image add per kernel tap: the same sums as a
    per-pixel window loop, without a Python loop over pixels.
    """
    k = check_kernel(kernel)
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"convolve takes a grayscale (2-D) image, got shape {img.shape}")
    height, width = img.shape
    pad_y, pad_x = k.shape[0] // 2, k.shape[1] // 2
    padded = np.pad(img.astype(np.float64), ((pad_y, pad_y), (pad_x, pad_x)), mode="edge")
    flipped = k[::-1, ::-1]
    out = np.zeros((height, width), dtype=np.float64)
    for dy in range(k.shape[0]):
        for dx in range(k.shape[1]):
            weight = flipped[dy, dx]
            if weight != 0.0:
                out += weight * padded[dy : dy + height, dx : dx + width]
    return out


def opencv_convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The same convolution by `cv2.filter2D`: rotated kernel, replicated border, float64."""
    k = check_kernel(kernel)
    return cv2.filter2D(
        np.asarray(image), cv2.CV_64F, cv2.flip(k, -1), borderType=cv2.BORDER_REPLICATE
    )


def to_uint8(response: np.ndarray) -> np.ndarray:
    """Round to the nearest grey level and clip to [0, 255] (negative edge responses -> 0)."""
    return np.clip(np.rint(response), 0, 255).astype(np.uint8)


def compare(image: np.ndarray, kernels: dict[str, np.ndarray] | None = None) -> dict[str, int]:
    """Max absolute uint8 difference, per kernel, between `convolve` and `cv2.filter2D`."""
    result = {}
    for name, kernel in (KERNELS if kernels is None else kernels).items():
        ours = to_uint8(convolve(image, kernel)).astype(np.int16)
        theirs = to_uint8(opencv_convolve(image, kernel)).astype(np.int16)
        result[name] = int(np.abs(ours - theirs).max())
    return result

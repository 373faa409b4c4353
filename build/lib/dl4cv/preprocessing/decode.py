"""Decode encoded image bytes with OpenCV, letting libjpeg shrink large JPEGs while decoding.

The book resizes a full-size decode down to 32x32. libjpeg can decode straight to 1/2, 1/4 or
1/8 scale (a DCT-domain average), several times faster; we only use a scale that still leaves
the image at least as large as the target, so the final INTER_AREA resize does the rest.
"""

from __future__ import annotations

import cv2
import numpy as np

_REDUCED = {
    1: {
        2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
        4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
        8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
    },
    3: {
        2: cv2.IMREAD_REDUCED_COLOR_2,
        4: cv2.IMREAD_REDUCED_COLOR_4,
        8: cv2.IMREAD_REDUCED_COLOR_8,
    },
}
_FULL = {1: cv2.IMREAD_GRAYSCALE, 3: cv2.IMREAD_COLOR}
# Start-of-frame markers carry the image size; C4, C8 and CC share the range but are not SOFs.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class DecodeError(ValueError):
    """The bytes are not an image OpenCV can decode."""


class ImageDecoder:
    def __init__(
        self, channels: int = 3, target_size: tuple[int, int] | None = None, fast: bool = True
    ) -> None:
        if channels not in _FULL:
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.channels = channels
        self.target_size = target_size
        self.fast = fast

    def decode(self, data: bytes) -> np.ndarray:
        if not data:
            raise DecodeError("empty file")
        buffer = np.frombuffer(data, dtype=np.uint8)
        image = cv2.imdecode(buffer, self._flag(data))
        if image is None or image.size == 0:
            raise DecodeError("not a decodable image (corrupt or unsupported format)")
        return image

    def _flag(self, data: bytes) -> int:
        if not (self.fast and self.target_size):
            return _FULL[self.channels]
        size = jpeg_size(data)
        if size is None:
            return _FULL[self.channels]
        width, height = size
        # EXIF orientation may turn the decoded image by 90 degrees: cover the target either way
        need = max(self.target_size)
        for scale in (8, 4, 2):
            if -(-width // scale) >= need and -(-height // scale) >= need:
                return _REDUCED[self.channels][scale]
        return _FULL[self.channels]


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame header, or None if it is not a JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 9 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _SOF:
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            return (width, height) if width and height else None
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None

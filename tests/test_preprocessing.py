"""Preprocessors and the JPEG-aware decoder, on images encoded by OpenCV."""

from __future__ import annotations

import functools
import struct

import cv2
import numpy as np
import pytest

from dl4cv.preprocessing import (
    DecodeError,
    ImageDecoder,
    ImageToArrayPreprocessor,
    SimplePreprocessor,
)
from dl4cv.preprocessing.decode import jpeg_size
from tests.conftest import blob_image, encode

FLAGS = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A photo-like BGR image: smooth shading, solid shapes with sharp edges, fine grain."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack(
        [128 + 100 * np.sin(x / 97 + c) * np.cos(y / 53 - c) for c in range(3)], axis=-1
    )
    for _ in range(40):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = tuple(float(v) for v in rng.integers(0, 256, 3))
        cv2.circle(image, centre, int(rng.integers(2, max(3, min(width, height) // 4))), colour, -1)
    grain = cv2.GaussianBlur(rng.normal(0, 25, (height, width, 3)).astype(np.float32), (0, 0), 2)
    return np.clip(image + grain, 0, 255).astype(np.uint8)


@functools.cache
def large_jpeg() -> bytes:
    return encode(photo(1600, 1200, seed=4), ".jpg")


def decoded(data: bytes, flag: int = cv2.IMREAD_COLOR) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), flag)


# --- SimplePreprocessor -----------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(32, 32), (28, 28), (64, 16), (7, 40)])
@pytest.mark.parametrize("channels", [1, 3])
def test_simple_preprocessor_output_size(width: int, height: int, channels: int):
    image = blob_image(1, size=50, channels=channels)
    out = SimplePreprocessor(width, height).preprocess(image)
    assert out.shape[:2] == (height, width)  # numpy: rows (height) first
    assert out.ndim == image.ndim
    if channels == 3:
        assert out.shape[2] == 3
    assert out.dtype == np.uint8


@pytest.mark.parametrize("interpolation", sorted(FLAGS))
def test_simple_preprocessor_uses_the_named_interpolation(interpolation: str):
    image = decoded(encode(photo(120, 90, seed=1), ".jpg"))
    out = SimplePreprocessor(32, 24, interpolation).preprocess(image)
    expected = cv2.resize(image, (32, 24), interpolation=FLAGS[interpolation])
    np.testing.assert_array_equal(out, expected)
    for other, flag in FLAGS.items():  # and not silently another one
        if other != interpolation:
            assert not np.array_equal(out, cv2.resize(image, (32, 24), interpolation=flag)), other


def test_simple_preprocessor_default_is_area():
    image = decoded(encode(photo(100, 80, seed=2)))
    np.testing.assert_array_equal(
        SimplePreprocessor(32, 32).preprocess(image),
        cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA),
    )


def test_simple_preprocessor_leaves_right_sized_images_alone():
    image = blob_image(2, size=32)
    out = SimplePreprocessor(32, 32, "cubic").preprocess(image)
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize(
    ("args", "message"),
    [((0, 32), "width and height"), ((32, -1), "width and height"), ((8, 8, "bilinear"), "one of")],
)
def test_simple_preprocessor_rejects_bad_settings(args: tuple, message: str):
    with pytest.raises(ValueError, match=message):
        SimplePreprocessor(*args)


# --- ImageToArrayPreprocessor -----------------------------------------------------------------


def test_image_to_array_adds_a_channel_axis_to_gray():
    gray = decoded(encode(blob_image(3, size=20, channels=1), ".png"), cv2.IMREAD_GRAYSCALE)
    assert gray.ndim == 2
    out = ImageToArrayPreprocessor().preprocess(gray)
    assert out.shape == (20, 20, 1)
    np.testing.assert_array_equal(out[:, :, 0], gray)


def test_image_to_array_keeps_color_images():
    color = decoded(encode(blob_image(0, size=20), ".png"))
    out = ImageToArrayPreprocessor().preprocess(color)
    assert out.shape == (20, 20, 3)
    np.testing.assert_array_equal(out, color)


def test_image_to_array_rejects_other_ranks():
    with pytest.raises(ValueError, match="2 or 3 dimensions"):
        ImageToArrayPreprocessor().preprocess(np.zeros(5, np.uint8))


# --- jpeg_size ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(1, 1), (17, 5), (32, 32), (300, 200), (97, 1031)])
def test_jpeg_size_reads_baseline_jpegs(width: int, height: int):
    data = encode(photo(width, height, seed=width), ".jpg")
    assert jpeg_size(data) == (width, height)


def test_jpeg_size_reads_progressive_and_gray_jpegs():
    image = photo(123, 45)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    data = buf.tobytes()
    assert b"\xff\xc2" in data  # really progressive (SOF2)
    assert jpeg_size(data) == (123, 45)
    assert jpeg_size(encode(image[:, :, 0], ".jpg")) == (123, 45)


def test_jpeg_size_skips_segments_before_the_frame_header():
    data = encode(photo(64, 40))
    comment = b"made by a test" * 20
    # SOI, a fill byte, a COM segment, then the rest of the file (APP0, DQT, SOF0...)
    extra = b"\xff" + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
    patched = data[:2] + extra + data[2:]
    assert decoded(patched).shape == (40, 64, 3)  # still a valid JPEG
    assert jpeg_size(patched) == (64, 40)


def test_jpeg_size_is_none_for_non_jpegs():
    assert jpeg_size(encode(photo(30, 20), ".png")) is None
    assert jpeg_size(np.random.default_rng(0).integers(0, 256, 500, np.uint8).tobytes()) is None
    assert jpeg_size(b"") is None
    assert jpeg_size(b"\xff\xd8" + b"junk" * 10) is None
    assert jpeg_size(encode(photo(64, 64))[:20]) is None  # cut before the frame header


# --- ImageDecoder -------------------------------------------------------------------------------


def test_decoder_full_decode_matches_opencv():
    data = encode(photo(90, 70, seed=3))
    np.testing.assert_array_equal(ImageDecoder(3).decode(data), decoded(data))
    np.testing.assert_array_equal(ImageDecoder(1).decode(data), decoded(data, cv2.IMREAD_GRAYSCALE))


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\xff\xd8\xff\xe0" + b"\0" * 50])
def test_decoder_raises_decode_error_on_bad_bytes(data: bytes):
    with pytest.raises(DecodeError):
        ImageDecoder(3, (32, 32)).decode(data)


def test_decoder_only_accepts_one_or_three_channels():
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        ImageDecoder(channels=4)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("target", [(32, 32), (64, 48), (28, 28)])
def test_fast_decode_matches_full_decode_after_resize(channels: int, target: tuple[int, int]):
    data = large_jpeg()
    fast_raw = ImageDecoder(channels, target, fast=True).decode(data)
    full_raw = ImageDecoder(channels, target, fast=False).decode(data)
    assert full_raw.shape[:2] == (1200, 1600)
    assert fast_raw.shape[0] < 1200  # the shortcut was really taken
    resize = SimplePreprocessor(*target)
    fast, full = resize.preprocess(fast_raw), resize.preprocess(full_raw)
    assert (
        fast.shape == full.shape == ((target[1], target[0], 3) if channels == 3 else target[::-1])
    )
    diff = np.abs(fast.astype(int) - full.astype(int))
    # measured: mean 0.17-0.45, max 2-13 grey levels on this image; bounds leave ~4x margin
    assert diff.mean() < 2.0
    assert diff.max() < 48


@pytest.mark.parametrize(
    ("size", "target"),
    [
        ((256, 256), (32, 32)),
        ((255, 255), (32, 32)),
        ((257, 100), (32, 32)),
        ((100, 300), (32, 32)),
        ((63, 63), (32, 32)),
        ((31, 200), (32, 32)),
        ((640, 480), (200, 150)),
        ((640, 480), (161, 121)),
        ((1000, 90), (28, 28)),
    ],
)
def test_fast_decode_never_goes_below_the_target(size: tuple[int, int], target: tuple[int, int]):
    width, height = size
    data = encode(photo(width, height, seed=width + height))
    out = ImageDecoder(3, target, fast=True).decode(data)
    # the largest libjpeg scale (8, 4, 2) that keeps both sides >= the target whichever way the
    # image is turned, or none
    need = max(target)
    scale = next((s for s in (8, 4, 2) if -(-width // s) >= need and -(-height // s) >= need), 1)
    assert out.shape == (-(-height // scale), -(-width // scale), 3)
    assert out.shape[1] >= min(target[0], width)
    assert out.shape[0] >= min(target[1], height)


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an APP1 Exif segment holding only the orientation tag (0x0112) after SOI."""
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + ifd + struct.pack(">I", 0)
    app1 = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


@pytest.mark.parametrize("target", [(64, 16), (16, 64), (32, 32)])
def test_fast_decode_covers_the_target_of_an_exif_rotated_jpeg(target: tuple[int, int]):
    data = with_exif_orientation(encode(photo(2000, 300, seed=6)), orientation=6)
    full = ImageDecoder(3, target, fast=False).decode(data)
    assert full.shape == (2000, 300, 3)  # OpenCV applied the rotation: now 300 wide
    assert jpeg_size(data) == (2000, 300)  # the frame header still has the stored size
    out = ImageDecoder(3, target, fast=True).decode(data)
    assert out.shape[1] >= target[0] and out.shape[0] >= target[1], out.shape
    assert out.shape[0] < 2000  # and the shortcut was still taken
    resize = SimplePreprocessor(*target)
    diff = np.abs(resize.preprocess(out).astype(int) - resize.preprocess(full).astype(int))
    # measured: mean 0.15-2.02 (the 32x32 squash of this 300x2000 strip is the worst case)
    assert diff.mean() < 6.0


def test_fast_decode_leaves_pngs_and_untargeted_decodes_at_full_size():
    image = photo(400, 300, seed=5)
    png = encode(image, ".png")
    np.testing.assert_array_equal(ImageDecoder(3, (32, 32), fast=True).decode(png), image)
    jpg = encode(image)
    assert ImageDecoder(3, None, fast=True).decode(jpg).shape == (300, 400, 3)
    assert ImageDecoder(3, (32, 32), fast=False).decode(jpg).shape == (300, 400, 3)

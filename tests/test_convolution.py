"""Ch 11: the hand-written convolution equals cv2.filter2D once kernel flip and border match."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dl4cv.preprocessing.convolution import (
    KERNELS,
    compare,
    convolve,
    opencv_convolve,
    to_uint8,
)
from tests.conftest import encode


@pytest.fixture(scope="module")
def gray() -> np.ndarray:
    """A real grayscale photo-like image: gradient, shapes, noise, through JPEG and back."""
    yy, xx = np.mgrid[0:90, 0:120]
    image = (xx * 1.5 + yy * 0.6).astype(np.uint8)
    cv2.circle(image, (70, 45), 25, 240, -1)
    cv2.rectangle(image, (8, 8), (35, 60), 20, -1)
    noise = np.random.default_rng(0).normal(0, 10, image.shape)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    decoded = cv2.imdecode(np.frombuffer(encode(image), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert decoded.shape == (90, 120) and decoded.dtype == np.uint8
    return decoded


def test_book_kernels():
    assert set(KERNELS) == {
        "small_blur",
        "large_blur",
        "sharpen",
        "laplacian",
        "sobel_x",
        "sobel_y",
        "emboss",
    }
    assert KERNELS["small_blur"].shape == (7, 7)
    assert KERNELS["large_blur"].shape == (21, 21)
    assert KERNELS["small_blur"].sum() == pytest.approx(1.0)
    assert KERNELS["large_blur"].sum() == pytest.approx(1.0)
    assert KERNELS["sharpen"].sum() == 1 and KERNELS["laplacian"].sum() == 0


def test_every_kernel_matches_opencv(gray):
    diffs = compare(gray)
    assert diffs == dict.fromkeys(KERNELS, 0)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_raw_responses_and_opencv_uint8_within_rounding(gray, name):
    kernel = KERNELS[name]
    ours = convolve(gray, kernel)
    assert ours.shape == gray.shape and ours.dtype == np.float64
    # OpenCV's large kernels go through a float32 DFT: close, not bit-identical.
    np.testing.assert_allclose(ours, opencv_convolve(gray, kernel), rtol=0, atol=1e-4)
    # OpenCV's own uint8 output (ddepth -1, saturating) is within one grey level.
    cv_uint8 = cv2.filter2D(gray, -1, cv2.flip(kernel, -1), borderType=cv2.BORDER_REPLICATE)
    assert np.abs(to_uint8(ours).astype(int) - cv_uint8.astype(int)).max() <= 1
    # The filter does something visible: the comparison is not of two blank images.
    assert np.abs(to_uint8(ours).astype(int) - gray.astype(int)).max() > 10


def test_convolution_flips_the_kernel():
    """An impulse's response is the kernel itself (a correlation would give it rotated)."""
    impulse = np.zeros((7, 7), np.uint8)
    impulse[3, 3] = 1
    emboss = KERNELS["emboss"]
    np.testing.assert_array_equal(convolve(impulse, emboss)[2:5, 2:5], emboss)
    # filter2D correlates: without the rotation the antisymmetric kernels change sign.
    correlation = cv2.filter2D(impulse, cv2.CV_64F, emboss, borderType=cv2.BORDER_REPLICATE)
    np.testing.assert_array_equal(correlation[2:5, 2:5], emboss[::-1, ::-1])


def test_plain_filter2d_differs_where_the_doc_says(gray):
    """cv2.filter2D(gray, -1, K) as called naively: Sobel is negated, borders reflect."""
    ours = to_uint8(convolve(gray, KERNELS["sobel_x"])).astype(int)
    naive = cv2.filter2D(gray, -1, KERNELS["sobel_x"]).astype(int)
    assert np.abs(ours - naive).max() > 100
    ours = to_uint8(convolve(gray, KERNELS["laplacian"])).astype(int)
    naive = cv2.filter2D(gray, -1, KERNELS["laplacian"]).astype(int)  # symmetric kernel
    assert np.abs(ours - naive)[1:-1, 1:-1].max() == 0  # interior equal
    assert np.abs(ours - naive).max() > 0  # BORDER_REFLECT_101 differs on the edge rows


def test_replicated_border_by_hand():
    image = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90]], np.uint8)
    # Top-left with the Laplacian: up and left neighbours replicate the pixel itself (10).
    expected = 20 + 40 + 10 + 10 - 4 * 10
    assert convolve(image, KERNELS["laplacian"])[0, 0] == expected
    box = np.ones((3, 3)) / 9
    assert convolve(image, box)[1, 1] == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("kernel", "match"),
    [
        (np.ones((4, 4)), "odd"),
        (np.ones((3, 2)), "odd"),
        (np.ones(3), "2-D"),
        (np.array([[0, np.nan, 0]] * 3), "NaN"),
    ],
)
def test_bad_kernels_are_refused(kernel, match):
    with pytest.raises(ValueError, match=match):
        convolve(np.zeros((5, 5), np.uint8), kernel)
    with pytest.raises(ValueError, match=match):
        compare(np.zeros((5, 5), np.uint8), {"bad": kernel})


def test_colour_image_is_refused():
    with pytest.raises(ValueError, match="grayscale"):
        convolve(np.zeros((5, 5, 3), np.uint8), KERNELS["sharpen"])

"""Ch 21: the captcha generator, the book's contour segmentation and the pad-and-resize step."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dl4cv.captcha.generator import CaptchaGenerator
from dl4cv.captcha.segment import Box, SegmentationError, crop_digit, find_digits
from dl4cv.config import CaptchaSegment
from dl4cv.preprocessing import AspectAwarePreprocessor


def iou(a: Box, b: tuple[int, int, int, int]) -> float:
    x1, y1 = max(a.x, b[0]), max(a.y, b[1])
    x2, y2 = min(a.x + a.w, b[0] + b[2]), min(a.y + a.h, b[1] + b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    return inter / (a.w * a.h + b[2] * b[3] - inter)


def page(width: int = 160, height: int = 50) -> np.ndarray:
    """A light, slightly noisy background."""
    rng = np.random.default_rng(0)
    return np.clip(rng.normal(225, 5, (height, width)), 0, 255).astype(np.uint8)


def draw(image: np.ndarray, text: str, x: int, scale: float = 1.0, thick: int = 2) -> Box:
    """Draw dark text at x; return the box of the ink it added."""
    before = image.copy()
    cv2.putText(image, text, (x, 38), cv2.FONT_HERSHEY_SIMPLEX, scale, 30, thick)
    ys, xs = np.nonzero(image != before)
    return Box(int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1)


def test_generator_is_seeded_per_captcha_and_keeps_digits_apart():
    one, other = CaptchaGenerator(7), CaptchaGenerator(8)
    first = one.render(3)
    assert np.array_equal(first.image, CaptchaGenerator(7).render(3).image)  # reproducible
    assert not np.array_equal(first.image, other.render(3).image)  # the seed matters
    for i in range(40):
        captcha = one.render(i)
        assert captcha.image.shape == (48, 144, 3) and captcha.image.dtype == np.uint8
        assert len(captcha.text) == 4 and set(captcha.text) <= set("123456789")
        xs = [(x, x + w) for x, _, w, _ in captcha.boxes]
        assert all(end < start for (_, end), (start, _) in zip(xs, xs[1:], strict=False)), xs
        for x, y, w, h in captcha.boxes:  # dark digits on a light background
            assert captcha.image[y : y + h, x : x + w].min() < 110
        assert np.median(captcha.image) > 180


def test_segmentation_finds_the_generated_digits_left_to_right():
    generator = CaptchaGenerator(21)
    for i in range(60):
        captcha = generator.render(i)
        boxes = find_digits(captcha.image)
        assert [b.x for b in boxes] == sorted(b.x for b in boxes)
        scores = [iou(b, truth) for b, truth in zip(boxes, captcha.boxes, strict=True)]
        assert min(scores) > 0.75, (i, boxes, captcha.boxes)


def test_segmentation_keeps_the_four_largest_contours_in_reading_order():
    image = page()
    # the largest digit last, small ones first: area order differs from reading order
    drawn = [draw(image, "1", 8, 0.9), draw(image, "7", 45, 1.0), draw(image, "4", 80, 1.2)]
    drawn.append(draw(image, "8", 118, 1.4, 3))
    image[5, 60] = image[45, 150] = image[20, 2] = 20  # specks: contours too small to count
    boxes = find_digits(image)
    assert [b.x for b in boxes] == [d.x for d in drawn]
    for found, truth in zip(boxes, drawn, strict=True):
        assert iou(found, (truth.x, truth.y, truth.w, truth.h)) > 0.8


def test_a_digit_touching_the_border_is_still_found():
    image = page()
    draw(image, "5", 30)
    draw(image, "6", 70)
    draw(image, "2", 105)
    cv2.rectangle(image, (0, 10), (8, 40), 30, -1)  # a dark bar cut by the left edge
    boxes = find_digits(image)
    assert boxes[0] == Box(0, 10, 9, 31)


def test_too_few_or_merged_digits_are_reported_not_guessed():
    three = page()
    for x, ch in ((10, "3"), (50, "4"), (90, "5")):
        draw(three, ch, x)
    with pytest.raises(SegmentationError, match="found 3 contours, expected 4"):
        find_digits(three)
    merged = three.copy()
    draw(merged, "9", 130)
    cv2.line(merged, (20, 30), (60, 30), 30, 3)  # joins 3 and 4 into one contour...
    merged[5, 5] = 20  # ...so the 4th largest is a speck
    with pytest.raises(SegmentationError, match="under 50% of the tallest"):
        find_digits(merged)
    with pytest.raises(SegmentationError):  # noise only: no digit-sized contours
        find_digits(page())
    # with the check off, the book's blind "4 largest" takes the speck as a digit
    lenient = CaptchaSegment(min_height_ratio=0.0)
    assert len(find_digits(merged, lenient)) == 4


def test_crop_keeps_a_margin_and_refuses_boxes_outside_the_image():
    image = page()
    box = draw(image, "7", 60)
    crop = crop_digit(image, box, CaptchaSegment(margin=5))
    assert crop.shape == (box.h + 10, box.w + 10)
    assert crop[5 : 5 + box.h, 5 : 5 + box.w].min() < 60  # the ink is inside the margin
    assert crop[:3].min() > 150 and crop[:, :3].min() > 150  # the margin is background
    colour = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    assert np.array_equal(crop_digit(colour, box), crop)  # BGR is read as gray
    with pytest.raises(SegmentationError, match="outside"):
        crop_digit(image, Box(150, 10, 30, 20))


def test_aspect_aware_preprocessor_pads_instead_of_stretching():
    tall = np.full((40, 10), 200, np.uint8)
    tall[:, 4:6] = 0  # a vertical stroke, 1/5 of the width
    out = AspectAwarePreprocessor(28, 28).preprocess(tall)
    assert out.shape == (28, 28)
    dark_columns = np.nonzero(out.min(axis=0) < 100)[0]
    assert 1 <= len(dark_columns) <= 3  # still a thin stroke (stretching would make it 5+)
    assert abs(dark_columns.mean() - 13.5) <= 1  # centred
    assert out[:, :8].min() == 200 and out[:, 20:].min() == 200  # padding repeats the edge
    wide = np.zeros((7, 30), np.uint8)
    assert AspectAwarePreprocessor(28, 28).preprocess(wide).shape == (28, 28)
    odd = np.zeros((27, 14), np.uint8)  # odd padding: the final resize makes it exact
    assert AspectAwarePreprocessor(28, 28).preprocess(odd).shape == (28, 28)
    assert AspectAwarePreprocessor(32, 16).preprocess(tall).shape == (16, 32)
    with pytest.raises(ValueError, match="interpolation"):
        AspectAwarePreprocessor(28, 28, "bicubic")
    with pytest.raises(ValueError, match="empty"):
        AspectAwarePreprocessor(28, 28).preprocess(np.zeros((0, 5), np.uint8))

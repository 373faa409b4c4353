"""Seeded 4-digit captchas whose text is known, drawn with OpenCV.

The book downloads 500 captchas from a public endpoint that no longer answers. These look like
them where it matters for chapter 21: separate dark digits 1-9 on a noisy light background,
each turned by a few degrees, in one of several stroke fonts. Digits never touch, so the
book's contour segmentation applies; light lines and tiny dark specks are there to be ignored
by it. (The `captcha` package's ImageCaptcha overlaps its glyphs, which contours cannot split.)

Each captcha is drawn from its own generator seeded by (seed, index): captcha 17 is the same
whether 20 or 500 are made, so a rerun only draws what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

WIDTH, HEIGHT = 144, 48
DIGITS = "123456789"  # the book's captchas use 1-9
FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
)
MAX_ROTATION = 12.0  # degrees, either way
GAP = 3  # least number of background pixels between two digits
EDGE = 2  # least number of background pixels around the digits


@dataclass(frozen=True)
class RenderedCaptcha:
    """A captcha image (BGR uint8), its text, and each digit's box (x, y, w, h), left to right."""

    image: np.ndarray
    text: str
    boxes: tuple[tuple[int, int, int, int], ...]


class CaptchaGenerator:
    def __init__(self, seed: int, length: int = 4) -> None:
        if not 1 <= length <= 4:  # widest glyphs are 28 px: 4 of them fit in 144 px
            raise ValueError(f"length must be 1..4, got {length}")
        self.seed = seed
        self.length = length

    def render(self, index: int) -> RenderedCaptcha:
        rng = np.random.default_rng([self.seed, index])
        text = "".join(rng.choice(list(DIGITS), self.length))
        canvas = _background(rng)
        glyphs = [_glyph(char, rng) for char in text]
        # Spread the spare width at random over the gaps before, between and after the digits.
        spare = WIDTH - 2 * EDGE - sum(g.shape[1] for g in glyphs) - GAP * (self.length - 1)
        cuts = np.sort(rng.integers(0, spare + 1, self.length))
        ink = np.zeros((HEIGHT, WIDTH), np.float32)  # digit coverage, 0..1
        boxes = []
        x = EDGE
        for glyph, before in zip(glyphs, np.diff(cuts, prepend=0), strict=True):
            gh, gw = glyph.shape
            x += int(before)
            y = int(rng.integers(EDGE, HEIGHT - EDGE - gh + 1))
            ink[y : y + gh, x : x + gw] = glyph
            ys, xs = np.nonzero(glyph > 0.5)
            boxes.append(
                (x + int(xs.min()), y + int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1)
            )
            x += gw + GAP
        shade = rng.uniform(20, 80, 3).astype(np.float32)  # dark ink, slightly coloured
        image = canvas * (1 - ink[..., None]) + shade * ink[..., None]
        specks = rng.integers(0, [WIDTH, HEIGHT], (int(rng.integers(3, 9)), 2))
        for sx, sy in specks:  # one-pixel dark dots: contours far too small to be digits
            image[sy, sx] = rng.uniform(30, 90)
        image += rng.normal(0, 6, image.shape).astype(np.float32)
        return RenderedCaptcha(np.clip(np.rint(image), 0, 255).astype(np.uint8), text, tuple(boxes))


def _background(rng: np.random.Generator) -> np.ndarray:
    """A light, slightly tinted background with a few faint lines."""
    tint = rng.uniform(205, 245, 3).astype(np.float32)
    canvas = np.empty((HEIGHT, WIDTH, 3), np.float32)
    canvas[:] = tint
    for _ in range(int(rng.integers(2, 5))):
        p1 = (int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT)))
        p2 = (int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT)))
        colour = tuple(float(c) for c in rng.uniform(160, 200, 3))
        cv2.line(canvas, p1, p2, colour, 1, cv2.LINE_AA)
    return canvas


def _glyph(char: str, rng: np.random.Generator) -> np.ndarray:
    """One digit, turned by a few degrees, cropped to its ink: coverage in 0..1."""
    font = FONTS[int(rng.integers(len(FONTS)))]
    scale = float(rng.uniform(0.9, 1.15))
    thickness = int(rng.integers(2, 4))
    (tw, th), base = cv2.getTextSize(char, font, scale, thickness)
    side = int(max(tw, th + base) * 1.6) + 4
    patch = np.zeros((side, side), np.uint8)
    origin = ((side - tw) // 2, (side + th) // 2)
    cv2.putText(patch, char, origin, font, scale, 255, thickness, cv2.LINE_AA)
    angle = float(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
    turn = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
    patch = cv2.warpAffine(patch, turn, (side, side), flags=cv2.INTER_LINEAR)
    ys, xs = np.nonzero(patch)
    return patch[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32) / 255.0

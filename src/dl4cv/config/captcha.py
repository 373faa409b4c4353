"""`captcha:` (ch 21): captchas drawn or downloaded -> digit crops -> the dataset `captcha`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dl4cv.config.base import ConfigError, Int, Number, Seed, spec
from dl4cv.config.datasets import Dataset, ImageSpec, Source, SplitSpec

CAPTCHA = "captcha"  # the dataset name under which the captcha: section's digit crops go


@spec
class CaptchaSource:
    """Where the captchas come from. `generator` draws seeded 4-digit captchas whose text is
    known (offline, the default); `http` fetches `count` images from `url`, one per GET (the
    book's endpoint is gone, so the URL is a parameter)."""

    kind: Literal["generator", "http"] = "generator"
    count: Int = Field(500, ge=1)
    seed: Seed = 21  # generator
    url: str | None = None  # http
    timeout: Number = Field(10.0, gt=0)  # http: seconds per request
    retries: Int = Field(4, ge=0)  # http: consecutive failed attempts tolerated before giving up
    backoff: Number = Field(1.0, ge=0)  # http: first wait after a failure; doubles after each

    def __post_init__(self) -> None:
        if self.kind == "http" and not self.url:
            raise ConfigError("url: kind 'http' needs the URL of a captcha endpoint")


@spec
class CaptchaSegment:
    """The book's segmentation: pad, Otsu threshold, external contours, the largest `digits`."""

    digits: Int = Field(4, ge=1)
    pad: Int = Field(8, ge=0)  # border replicated around the captcha before thresholding
    margin: Int = Field(5, ge=0)  # pixels kept around each digit's box when cropping
    # A captcha is rejected (reported, not guessed) when one of the kept contours is shorter
    # than this fraction of the tallest: a speck or a broken piece, so digits merged or split.
    min_height_ratio: Number = Field(0.5, ge=0, le=1)


@spec
class CaptchaAnnotate:
    """`file`: labels from a CSV of `file,text` (null: the generator's truth.csv), unattended.
    `browser`: a labelling page on http://host:port/, saved after every key press."""

    method: Literal["file", "browser"] = "file"
    labels: str | None = None
    host: str = "127.0.0.1"
    port: Int = Field(8021, ge=0, le=65535)  # 0: any free port


@spec
class CaptchaSolve:
    """Whole new captchas (drawn by the generator with their own seed) solved end to end."""

    experiment: str = "captcha_breaker"
    count: Int = Field(200, ge=1)
    seed: Seed = 2021
    grid: Int = Field(16, ge=0)  # captchas drawn, annotated, in the solve grid image


@spec
class Captcha:
    """The ch 21 case study: captchas -> digit crops -> the dataset `captcha`."""

    source: CaptchaSource = CaptchaSource()
    segment: CaptchaSegment = CaptchaSegment()
    annotate: CaptchaAnnotate = CaptchaAnnotate()
    image: ImageSpec = ImageSpec(28, 28, 1)
    split: SplitSpec = SplitSpec("random")
    solve: CaptchaSolve = CaptchaSolve()

    def __post_init__(self) -> None:
        if self.image.channels != 1:
            raise ConfigError("image.channels: digit crops are grayscale, expected 1")
        if self.segment.digits > 4:  # solve always draws its captchas with the generator
            raise ConfigError(
                f"segment.digits: the generator draws 1 to 4 digits, got {self.segment.digits}"
            )
        if (
            self.annotate.method == "file"
            and not self.annotate.labels
            and self.source.kind == "http"
        ):
            raise ConfigError(
                "annotate.labels: method 'file' needs a CSV of file,text for downloaded "
                "captchas (only the generator knows its texts); or use method 'browser'"
            )
        if self.source.kind == "generator" and self.solve.seed == self.source.seed:
            raise ConfigError(
                f"solve.seed: must differ from source.seed ({self.source.seed}) so the solved "
                "captchas are new ones"
            )

    def dataset(self) -> Dataset:
        # No subset caps: the quick profile draws fewer captchas (source.count) instead.
        return Dataset(CAPTCHA, Source("captcha"), self.image, self.split)

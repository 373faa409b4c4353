"""`datasets:` and `preprocess:`: where each dataset comes from, its image size and split."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from dl4cv.config.base import KEY, Bool, Channels, ConfigError, Int, Number, Seed, Side, spec

IMAGE_ZIPS = ("image-folder-zip", "smiles-github-zip")  # formats read by the image loader


@spec
class Source:
    """Where a dataset comes from; `format` tells the preprocess stage how to read it."""

    # "captcha" is the captcha: section's own (dl4cv.captcha), not declarable under datasets:
    format: Literal[
        "keras-npz",
        "cifar10-python",
        "image-folder-zip",
        "smiles-github-zip",
        "sklearn-digits",
        "captcha",
    ]
    url: str | None = None
    sha256: str | None = None
    filename: str | None = None
    root: str | None = None
    splits: dict[str, str] | None = None
    classes: dict[str, str] | None = None
    # For an archive its host regenerates (GitHub's /archive/ zips: same files, other bytes),
    # `sha256: null` and this: the sha256 of the dataset's images inside it (see
    # dl4cv.data.sources.content_sha256), checked instead of the bytes of the archive.
    content_sha256: str | None = None
    # A folder (or file:// URL) whose mirror.json lists this dataset; relative to the repository
    # root. Unlike the DL4CV_MIRROR variable, DVC sees it: setting it reruns this download.
    mirror: str | None = None

    def __post_init__(self) -> None:
        if self.content_sha256 and self.format not in IMAGE_ZIPS:
            raise ConfigError(
                f"content_sha256: only for image zip archives, not format {self.format!r}"
            )
        mirror = self.mirror
        if mirror is not None and (
            not mirror.strip() or ("://" in mirror and not mirror.startswith("file://"))
        ):
            raise ConfigError(
                "mirror: expected a local folder or a file:// URL holding mirror.json, "
                f"got {mirror!r}"
            )


@spec
class ImageSpec:
    width: Side
    height: Side
    channels: Channels


@spec
class SplitSpec:
    """`official` keeps the dataset's own train/test split; the others split with a seed."""

    method: Literal["stratified", "random", "official"]
    test_size: Number = 0.25
    val_size: Number = 0.0
    random_state: Seed = 42

    def __post_init__(self) -> None:
        if not 0 < self.test_size < 1:
            raise ConfigError(f"test_size: expected a fraction in (0, 1), got {self.test_size}")
        if not 0 <= self.val_size < 1:
            raise ConfigError(f"val_size: expected a fraction in [0, 1), got {self.val_size}")


@spec
class Subset:
    """Caps on split sizes (stratified subsample), used by the quick profile."""

    max_train: Int | None = Field(None, ge=1)
    max_test: Int | None = Field(None, ge=1)


@spec
class Dataset:
    name: Annotated[str, KEY]
    source: Source
    image: ImageSpec
    split: SplitSpec
    subset: Subset = Subset()


@spec
class Preprocess:
    interpolation: Literal["area", "linear", "cubic", "nearest"] = "area"
    # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is that much smaller.
    fast_decode: Bool = True
    workers: Int = Field(0, ge=0)  # 0: one per CPU core

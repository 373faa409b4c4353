"""`imagenet:` (ch 20): networks pre-trained on ImageNet classify images."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dl4cv.config.base import Bool, ConfigError, Int, spec

ImageNetModel = Literal["vgg16", "vgg19", "resnet50", "inception_v3", "xception"]


@spec
class ImageNet:
    """Ch 20: classify images with networks pre-trained on ImageNet (keras.applications).

    Off by default: the weights (0.5 GB for a VGG) are never downloaded by the pipeline;
    docs/imagenet.md says where to put them. `weights.<model>` names a file, or `random` for
    untrained weights (a smoke run; the labels then mean nothing)."""

    enabled: Bool = False
    models: tuple[ImageNetModel, ...] = ("vgg16", "vgg19", "resnet50", "inception_v3", "xception")
    images: str | None = None  # a folder of images; null: scikit-learn's two sample photos
    weights_dir: str | None = None  # a folder holding Keras' weight file names
    weights: dict[ImageNetModel, str] = Field(default_factory=dict)
    labels: str | None = None  # imagenet_class_index.json; null: weights_dir or Keras' cache
    top: Int = Field(5, ge=1, le=1000)

    def __post_init__(self) -> None:
        if not self.models or len(set(self.models)) != len(self.models):
            raise ConfigError(f"models: expected distinct network names, got {list(self.models)}")

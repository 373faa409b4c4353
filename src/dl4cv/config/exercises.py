"""`exercises:`: the book's from-scratch and non-training examples (ch 8-11, 19).

One entry each; its `kind` picks the runner and the settings class of its `settings`, so an
error inside `settings` names the keys of that kind.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from dl4cv.config.base import (
    KEY,
    Bool,
    Chapter,
    ConfigError,
    Int,
    Number,
    SchemaBy,
    Seed,
    Side,
    adapter,
    spec,
)
from dl4cv.config.datasets import SplitSpec

TruthTable = Literal["or", "and", "xor"]
BookKernel = Literal[
    "small_blur", "large_blur", "sharpen", "laplacian", "sobel_x", "sobel_y", "emboss"
]
Alpha = Annotated[Number, Field(gt=0)]
Epochs = Annotated[Int, Field(ge=1)]


@spec
class LinearScoringSettings:
    """Ch 8: score one image of `image_class` with W and b drawn from `seed` (the book's 1)."""

    image_class: str
    image_index: Int = Field(0, ge=0)  # which image of that class, in the processed dataset's order
    seed: Seed = 1


@spec
class LossesWorkedSettings:
    """Ch 8: the book's worked tables. One row of class scores per image, labels by name."""

    classes: tuple[str, ...]
    hinge_scores: tuple[tuple[Number, ...], ...]
    hinge_labels: tuple[str, ...]
    softmax_scores: tuple[Number, ...]
    softmax_label: str
    delta: Number = Field(1.0, ge=0)

    def __post_init__(self) -> None:
        width = len(self.classes)
        if any(len(row) != width for row in self.hinge_scores):
            raise ConfigError(f"hinge_scores: expected rows of {width} scores (one per class)")
        if len(self.hinge_labels) != len(self.hinge_scores):
            raise ConfigError("hinge_labels: expected one label per row of hinge_scores")
        if len(self.softmax_scores) != width:
            raise ConfigError(f"softmax_scores: expected {width} scores (one per class)")
        for key, label in [
            *(("hinge_labels", x) for x in self.hinge_labels),
            ("softmax_label", self.softmax_label),
        ]:
            if label not in self.classes:
                raise ConfigError(f"{key}: {label!r} is not one of classes {list(self.classes)}")


@spec
class BlobsSpec:
    """scikit-learn's make_blobs arguments: ch 9's two-class toy data."""

    n_samples: Int = Field(1000, ge=1)
    n_features: Int = Field(2, ge=1)
    centers: Int = Field(2, ge=1)
    cluster_std: Number = Field(1.5, ge=0)
    random_state: Seed = 1


@spec
class GradientDescentSettings:
    """Ch 9: a sigmoid unit with squared loss, full batch or mini-batch, on blobs."""

    alpha: Alpha
    epochs: Epochs
    split: SplitSpec
    batch_size: Int | None = Field(None, ge=1)  # null: full-batch descent; n: mini-batch SGD
    shuffle: Bool = False  # the book walks the mini-batches in the same order every epoch
    blobs: BlobsSpec = BlobsSpec()


@spec
class RegularizationSettings:
    """Ch 9: scikit-learn's SGDClassifier on raw pixels with one penalty (none, L1 or L2)."""

    penalty: Literal["none", "l1", "l2"]
    split: SplitSpec  # the book's own 75/25 split (random_state 5), not the dataset's split
    loss: Literal["log_loss", "hinge"] = "log_loss"
    max_iter: Int = Field(10, ge=1)
    learning_rate: Literal["constant", "optimal", "invscaling", "adaptive"] = "constant"
    eta0: Number = Field(0.01, gt=0)
    # null: exactly max_iter epochs, as scikit-learn 0.19 (the book's) ran; a number stops early.
    tol: Number | None = Field(None, ge=0)
    random_state: Seed = 42


@spec
class PerceptronSettings:
    """Ch 10: Rosenblatt's perceptron on a truth table."""

    table: TruthTable
    alpha: Alpha
    epochs: Epochs


@spec
class NeuralNetworkSettings:
    """Ch 10: the from-scratch backpropagation network, on a truth table or a dataset."""

    layers: tuple[Int, ...]
    alpha: Alpha
    epochs: Epochs
    batch_size: Int = Field(1, ge=1)  # 1: the book's online updates, one example at a time
    table: TruthTable | None = None  # the data, for an exercise without a dataset
    # A second net trained on the same data, to compare (nn_xor: 2-1, no hidden layer, fails).
    baseline_layers: tuple[Int, ...] | None = None

    def __post_init__(self) -> None:
        for key in ("layers", "baseline_layers"):
            sizes = getattr(self, key)
            if sizes is not None and (len(sizes) < 2 or min(sizes) < 1):
                raise ConfigError(f"{key}: expected at least 2 layer sizes >= 1, got {sizes}")


@spec
class ConvolutionsSettings:
    """Ch 11: the hand-written convolution against cv2.filter2D on a photo bundled with
    scikit-learn (sklearn/datasets/images), converted to gray."""

    kernels: tuple[BookKernel, ...]
    image: Literal["china.jpg", "flower.jpg"] = "china.jpg"


@spec
class VisualizeSettings:
    """Ch 19: the architecture diagram of one of the book's networks."""

    model: Literal["lenet", "shallownet", "minivggnet"]
    width: Side
    height: Side
    depth: Annotated[Int, Field(ge=1)]
    classes: Annotated[Int, Field(ge=1)]
    renderer: Literal["auto", "graphviz", "matplotlib"] = "auto"  # auto: graphviz if installed


ExerciseKind = Literal[
    "linear_scoring",
    "losses_worked",
    "gradient_descent",
    "regularization",
    "perceptron",
    "neural_network",
    "convolutions",
    "visualize",
]
ExerciseSettings = (
    LinearScoringSettings
    | LossesWorkedSettings
    | GradientDescentSettings
    | RegularizationSettings
    | PerceptronSettings
    | NeuralNetworkSettings
    | ConvolutionsSettings
    | VisualizeSettings
)
EXERCISE_SETTINGS: dict[str, type] = {
    "linear_scoring": LinearScoringSettings,
    "losses_worked": LossesWorkedSettings,
    "gradient_descent": GradientDescentSettings,
    "regularization": RegularizationSettings,
    "perceptron": PerceptronSettings,
    "neural_network": NeuralNetworkSettings,
    "convolutions": ConvolutionsSettings,
    "visualize": VisualizeSettings,
}
EXERCISE_DATASET: dict[str, bool | None] = {  # reads a dataset: always, never, or either way
    "linear_scoring": True,
    "regularization": True,
    "neural_network": None,  # a dataset (nn_digits) or settings.table (nn_xor)
}


@spec
class Exercise:
    id: Annotated[str, KEY]
    chapter: Chapter
    kind: ExerciseKind
    settings: Annotated[ExerciseSettings, SchemaBy("kind", EXERCISE_SETTINGS)]
    dataset: str | None = None

    @field_validator("settings", mode="plain")
    @classmethod
    def _settings_of_its_kind(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        if kind is None:  # the kind itself was wrong: that error is the one reported
            return value
        if isinstance(value, EXERCISE_SETTINGS[kind]):
            return value
        return adapter(EXERCISE_SETTINGS[kind]).validate_python(value)

    def __post_init__(self) -> None:
        needs = EXERCISE_DATASET.get(self.kind, False)
        if needs is True and self.dataset is None:
            raise ConfigError(f"dataset: a {self.kind} exercise reads a dataset; name one")
        if needs is False and self.dataset is not None:
            raise ConfigError(f"dataset: a {self.kind} exercise reads no dataset; remove it")
        if isinstance(self.settings, NeuralNetworkSettings) and (
            (self.dataset is None) == (self.settings.table is None)
        ):
            raise ConfigError(
                "settings.table: a neural_network exercise learns either a truth table "
                "(settings.table) or a dataset (dataset): give exactly one"
            )

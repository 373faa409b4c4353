"""params.yaml -> typed, validated settings.

This is the only module that reads params.yaml. Everything is checked before any work starts:
an unknown key, a missing key or a wrong type fails with the full key path and what was
expected, so a typo in `dvc exp run -S ...` never costs a training run.

Each dataset and experiment may carry a `quick:` block: overrides merged in (deeply) when
`profile: quick` is selected, so both profiles live side by side in one file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from dl4cv.errors import InputError

PARAMS_FILE = "params.yaml"
SEED_MAX = 2**32 - 1  # NumPy's and scikit-learn's seeds are unsigned 32-bit integers
# The largest side of a processed image: the book's are 28 to 64 pixels; a larger side than
# this is a typo, not a setting (see IMAGE_SIDE).
MAX_SIDE = 4096


class ConfigError(InputError, ValueError):
    """params.yaml does not describe a valid pipeline."""


@dataclass(frozen=True)
class Bounds:
    """The allowed range of a number field, checked by `_build` so the error names its key."""

    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    why: str = ""  # the reason for `le`, said after a value above it

    def check(self, value: float | None, tp: Any, path: str) -> None:
        if value is None or (
            (self.gt is None or value > self.gt)
            and (self.ge is None or value >= self.ge)
            and (self.le is None or value <= self.le)
        ):
            return
        types_ = set(typing.get_args(tp)) or {tp}
        what = "an integer" if int in types_ else "a number"
        if self.le is None:
            expected = f"{what} > {self.gt}" if self.ge is None else f"{what} >= {self.ge}"
        elif self.ge is None:
            expected = f"{what} in ({self.gt}, {self.le}]"
        elif int in types_:
            expected = f"{what} in {self.ge}..{self.le}"
        else:
            expected = f"{what} in [{self.ge}, {self.le}]"
        raise ConfigError(
            f"{path}: expected {expected}{' or null' if type(None) in types_ else ''}, "
            f"got {value}"
            + (f" ({self.why})" if self.why and self.le is not None and value > self.le else "")
        )


def bounded(default: Any = dataclasses.MISSING, **bounds: Any) -> Any:
    """A dataclass field with `Bounds`: `learning_rate: float = bounded(0.01, gt=0)`."""
    return field(default=default, metadata={"bounds": Bounds(**bounds)})


SEED = {"ge": 0, "le": SEED_MAX}  # bounded(42, **SEED): a seed NumPy accepts
IMAGE_SIDE = {
    "ge": 1,
    "le": MAX_SIDE,
    "why": f"a processed dataset is one in-memory array of N x height x width x channels "
    f"bytes: above {MAX_SIDE} pixels a side, one colour image alone would take over 48 MiB",
}


IMAGE_ZIPS = ("image-folder-zip", "smiles-github-zip")  # formats read by the image loader


@dataclass(frozen=True)
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
        _check_mirror(self.mirror)


def _check_mirror(mirror: str | None) -> None:
    if mirror is not None and (
        not mirror.strip() or ("://" in mirror and not mirror.startswith("file://"))
    ):
        raise ConfigError(
            f"mirror: expected a local folder or a file:// URL holding mirror.json, got {mirror!r}"
        )


@dataclass(frozen=True)
class ImageSpec:
    width: int = bounded(**IMAGE_SIDE)
    height: int = bounded(**IMAGE_SIDE)
    channels: Literal[1, 3]


@dataclass(frozen=True)
class SplitSpec:
    """`official` keeps the dataset's own train/test split; the others split with a seed."""

    method: Literal["stratified", "random", "official"]
    test_size: float = 0.25
    val_size: float = 0.0
    random_state: int = bounded(42, **SEED)

    def __post_init__(self) -> None:
        if not 0 < self.test_size < 1:
            raise ConfigError(f"test_size: expected a fraction in (0, 1), got {self.test_size}")
        if not 0 <= self.val_size < 1:
            raise ConfigError(f"val_size: expected a fraction in [0, 1), got {self.val_size}")


@dataclass(frozen=True)
class Subset:
    """Caps on split sizes (stratified subsample), used by the quick profile."""

    max_train: int | None = bounded(None, ge=1)
    max_test: int | None = bounded(None, ge=1)


@dataclass(frozen=True)
class Dataset:
    name: str = field(metadata={"from_key": True})
    source: Source
    image: ImageSpec
    split: SplitSpec
    subset: Subset = Subset()


@dataclass(frozen=True)
class Preprocess:
    interpolation: Literal["area", "linear", "cubic", "nearest"] = "area"
    # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is that much smaller.
    fast_decode: bool = True
    workers: int = bounded(0, ge=0)  # 0: one per CPU core


@dataclass(frozen=True)
class ModelSpec:
    name: Literal["knn", "shallownet", "lenet", "minivggnet", "mlp"]
    batch_norm: bool = True  # minivggnet
    hidden: tuple[int, ...] = (256, 128)  # mlp: hidden layer sizes
    activation: Literal["sigmoid", "relu"] = "sigmoid"  # mlp: hidden activation
    n_neighbors: int = bounded(1, ge=1)
    metric: Literal["euclidean", "manhattan"] = "euclidean"

    def __post_init__(self) -> None:
        if min(self.hidden, default=1) < 1:
            raise ConfigError(f"hidden: expected layer sizes >= 1, got {list(self.hidden)}")


@dataclass(frozen=True)
class OptimizerSpec:
    name: Literal["sgd", "adam"] = "sgd"
    learning_rate: float = bounded(0.01, gt=0)
    momentum: float = bounded(0.0, ge=0, le=1)  # Keras' SGD accepts [0, 1]
    nesterov: bool = False
    # Keras 2 time-based decay: lr_t = lr0 / (1 + decay * t), t in optimizer steps.
    decay: float = bounded(0.0, ge=0)
    # The book's ch 16 step decay: lr = lr0 * step_factor ** floor((1 + epoch) / step_every).
    step_factor: float | None = None
    step_every: int = 5

    def __post_init__(self) -> None:
        if self.step_factor is not None:
            if self.decay:
                raise ConfigError("step_factor: use either decay (per step) or step_factor")
            if not 0 < self.step_factor <= 1 or self.step_every < 1:
                raise ConfigError(
                    "step_factor/step_every: expected 0 < step_factor <= 1 and step_every >= 1, "
                    f"got {self.step_factor} and {self.step_every}"
                )


@dataclass(frozen=True)
class TrainSpec:
    batch_size: int = 32
    epochs: int = 10
    monitor: Literal["val_loss", "val_accuracy", "loss", "accuracy"] = "val_loss"
    steps_per_execution: int = 1  # keras runner only
    jit_compile: Literal["auto"] | bool = "auto"  # keras runner only (scan always compiles)
    # keras: model.fit. scan: one jitted lax.scan per epoch, data kept on the device
    # (dl4cv.training.jax_epochs; needs KERAS_BACKEND=jax, checked when training starts).
    # auto: scan on JAX with a GPU/TPU, keras everywhere else (dl4cv.training.fit.resolve).
    runner: Literal["auto", "keras", "scan"] = "auto"
    # Keras dtype policy of the model's layers (mixed_bfloat16: bfloat16 compute, float32 weights).
    # auto: mixed_bfloat16 where it was measured to pay and keep the accuracy, else float32.
    dtype_policy: Literal["auto", "float32", "mixed_bfloat16"] = "auto"
    # Save the resume state at most every N seconds (and always after the last epoch); 0: every
    # epoch. A kill then loses up to N seconds of training. A book-profile epoch on a CPU
    # mostly outlasts 10 s (saved each time); on a GPU MiniVGGNet's takes 0.34 s, and saving
    # its 25 MB state after each would add half of that.
    checkpoint_interval_s: float = 10.0
    # best: one file, overwritten on each improvement of `monitor` (ch 18 checkpoint_best).
    # improvements: also one weights file per improvement, weights-{epoch:03d}-{monitor:.4f}.
    checkpoint: Literal["best", "improvements"] = "best"
    # The ch 17 TrainingMonitor: history JSON and curves PNG rewritten after every epoch.
    training_monitor: bool = False
    # balanced: weight each class by (largest class count / its count) on the training split,
    # as the book's ch 22 does for the smile classes.
    class_weight: Literal["none", "balanced"] = "none"

    def __post_init__(self) -> None:
        for name in ("batch_size", "epochs", "steps_per_execution"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")
        if not self.checkpoint_interval_s >= 0:
            raise ConfigError(
                f"checkpoint_interval_s: expected a number >= 0, got {self.checkpoint_interval_s}"
            )


@dataclass(frozen=True)
class EvaluateSpec:
    # The book reports the model as it stands after the last epoch; `best` uses the checkpoint.
    checkpoint: Literal["final", "best"] = "final"


@dataclass(frozen=True)
class Experiment:
    id: str = field(metadata={"from_key": True})
    chapter: int = bounded(ge=1)
    dataset: str
    model: ModelSpec
    optimizer: OptimizerSpec = OptimizerSpec()
    train: TrainSpec = TrainSpec()
    evaluate: EvaluateSpec = EvaluateSpec()

    @property
    def is_keras(self) -> bool:
        return self.model.name != "knn"


CAPTCHA = "captcha"  # the dataset name under which the captcha: section's digit crops go


@dataclass(frozen=True)
class CaptchaSource:
    """Where the captchas come from. `generator` draws seeded 4-digit captchas whose text is
    known (offline, the default); `http` fetches `count` images from `url`, one per GET (the
    book's endpoint is gone, so the URL is a parameter)."""

    kind: Literal["generator", "http"] = "generator"
    count: int = 500
    seed: int = bounded(21, **SEED)  # generator
    url: str | None = None  # http
    timeout: float = 10.0  # http: seconds per request
    retries: int = 4  # http: consecutive failed attempts tolerated before giving up
    backoff: float = 1.0  # http: first wait after a failure; doubles after each further one

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"count: expected an integer >= 1, got {self.count}")
        if self.kind == "http" and not self.url:
            raise ConfigError("url: kind 'http' needs the URL of a captcha endpoint")
        if self.timeout <= 0 or self.retries < 0 or self.backoff < 0:
            raise ConfigError(
                "timeout/retries/backoff: expected timeout > 0, retries >= 0, backoff >= 0, "
                f"got {self.timeout}, {self.retries}, {self.backoff}"
            )


@dataclass(frozen=True)
class CaptchaSegment:
    """The book's segmentation: pad, Otsu threshold, external contours, the largest `digits`."""

    digits: int = 4
    pad: int = 8  # border replicated around the captcha before thresholding
    margin: int = 5  # pixels kept around each digit's box when cropping
    # A captcha is rejected (reported, not guessed) when one of the kept contours is shorter
    # than this fraction of the tallest: a speck or a broken piece, so digits merged or split.
    min_height_ratio: float = 0.5

    def __post_init__(self) -> None:
        if self.digits < 1 or self.pad < 0 or self.margin < 0:
            raise ConfigError(
                f"digits/pad/margin: expected digits >= 1, pad >= 0, margin >= 0, got "
                f"{self.digits}, {self.pad}, {self.margin}"
            )
        if not 0 <= self.min_height_ratio <= 1:
            raise ConfigError(
                f"min_height_ratio: expected a fraction in [0, 1], got {self.min_height_ratio}"
            )


@dataclass(frozen=True)
class CaptchaAnnotate:
    """`file`: labels from a CSV of `file,text` (null: the generator's truth.csv), unattended.
    `browser`: a labelling page on http://host:port/, saved after every key press."""

    method: Literal["file", "browser"] = "file"
    labels: str | None = None
    host: str = "127.0.0.1"
    port: int = 8021

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port: expected 0..65535 (0: any free port), got {self.port}")


@dataclass(frozen=True)
class CaptchaSolve:
    """Whole new captchas (drawn by the generator with their own seed) solved end to end."""

    experiment: str = "captcha_breaker"
    count: int = 200
    seed: int = bounded(2021, **SEED)
    grid: int = 16  # captchas drawn, annotated, in the solve grid image

    def __post_init__(self) -> None:
        if self.count < 1 or self.grid < 0:
            raise ConfigError(
                f"count/grid: expected count >= 1 and grid >= 0, got {self.count}, {self.grid}"
            )


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Prediction:
    """The book's ch 13: reload a trained model in a stage of its own and label sample images."""

    id: str = field(metadata={"from_key": True})
    chapter: int = bounded(ge=1)
    experiment: str  # a Keras experiment of `experiments`, trained first
    # The experiment's dataset, named again so dvc.yaml can depend on exactly its files.
    dataset: str
    samples: int = 10  # test images drawn at random (seeded)
    seed: int = bounded(42, **SEED)

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ConfigError(f"samples: expected an integer >= 1, got {self.samples}")


# --- Exercises: the book's from-scratch and non-training examples (ch 8-11, 19) ---------------
# One entry of `exercises:` each; `kind` picks the runner and the schema of its `settings`.

TruthTable = Literal["or", "and", "xor"]
BookKernel = Literal[
    "small_blur", "large_blur", "sharpen", "laplacian", "sobel_x", "sobel_y", "emboss"
]


@dataclass(frozen=True)
class LinearScoringSettings:
    """Ch 8: score one image of `image_class` with W and b drawn from `seed` (the book's 1)."""

    image_class: str
    image_index: int = 0  # which image of that class, in the processed dataset's order
    seed: int = bounded(1, **SEED)

    def __post_init__(self) -> None:
        if self.image_index < 0:
            raise ConfigError(f"image_index: expected an integer >= 0, got {self.image_index}")


@dataclass(frozen=True)
class LossesWorkedSettings:
    """Ch 8: the book's worked tables. One row of class scores per image, labels by name."""

    classes: tuple[str, ...]
    hinge_scores: tuple[tuple[float, ...], ...]
    hinge_labels: tuple[str, ...]
    softmax_scores: tuple[float, ...]
    softmax_label: str
    delta: float = bounded(1.0, ge=0)

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


@dataclass(frozen=True)
class BlobsSpec:
    """scikit-learn's make_blobs arguments: ch 9's two-class toy data."""

    n_samples: int = bounded(1000, ge=1)
    n_features: int = bounded(2, ge=1)
    centers: int = bounded(2, ge=1)
    cluster_std: float = bounded(1.5, ge=0)
    random_state: int = bounded(1, **SEED)


@dataclass(frozen=True)
class GradientDescentSettings:
    """Ch 9: a sigmoid unit with squared loss, full batch or mini-batch, on blobs."""

    alpha: float
    epochs: int
    split: SplitSpec
    batch_size: int | None = None  # null: full-batch gradient descent; n: mini-batch SGD
    shuffle: bool = False  # the book walks the mini-batches in the same order every epoch
    blobs: BlobsSpec = BlobsSpec()

    def __post_init__(self) -> None:
        _check_training(self.alpha, self.epochs, self.batch_size)


@dataclass(frozen=True)
class RegularizationSettings:
    """Ch 9: scikit-learn's SGDClassifier on raw pixels with one penalty (none, L1 or L2)."""

    penalty: Literal["none", "l1", "l2"]
    split: SplitSpec  # the book's own 75/25 split (random_state 5), not the dataset's split
    loss: Literal["log_loss", "hinge"] = "log_loss"
    max_iter: int = bounded(10, ge=1)
    learning_rate: Literal["constant", "optimal", "invscaling", "adaptive"] = "constant"
    eta0: float = bounded(0.01, gt=0)
    # null: exactly max_iter epochs, as scikit-learn 0.19 (the book's) ran; a number stops early.
    tol: float | None = bounded(None, ge=0)
    random_state: int = bounded(42, **SEED)


@dataclass(frozen=True)
class PerceptronSettings:
    """Ch 10: Rosenblatt's perceptron on a truth table."""

    table: TruthTable
    alpha: float
    epochs: int

    def __post_init__(self) -> None:
        _check_training(self.alpha, self.epochs)


@dataclass(frozen=True)
class NeuralNetworkSettings:
    """Ch 10: the from-scratch backpropagation network, on a truth table or a dataset."""

    layers: tuple[int, ...]
    alpha: float
    epochs: int
    batch_size: int = 1  # 1: the book's online updates, one example at a time
    table: TruthTable | None = None  # the data, for an exercise without a dataset
    # A second net trained on the same data, to compare (nn_xor: 2-1, no hidden layer, fails).
    baseline_layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _check_training(self.alpha, self.epochs, self.batch_size)
        for key in ("layers", "baseline_layers"):
            sizes = getattr(self, key)
            if sizes is not None and (len(sizes) < 2 or min(sizes) < 1):
                raise ConfigError(f"{key}: expected at least 2 layer sizes >= 1, got {sizes}")


@dataclass(frozen=True)
class ConvolutionsSettings:
    """Ch 11: the hand-written convolution against cv2.filter2D on a photo bundled with
    scikit-learn (sklearn/datasets/images), converted to gray."""

    kernels: tuple[BookKernel, ...]
    image: Literal["china.jpg", "flower.jpg"] = "china.jpg"


@dataclass(frozen=True)
class VisualizeSettings:
    """Ch 19: the architecture diagram of one of the book's networks."""

    model: Literal["lenet", "shallownet", "minivggnet"]
    width: int = bounded(**IMAGE_SIDE)
    height: int = bounded(**IMAGE_SIDE)
    depth: int = bounded(ge=1)
    classes: int = bounded(ge=1)
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


@dataclass(frozen=True)
class Exercise:
    id: str = field(metadata={"from_key": True})
    chapter: int = bounded(ge=1)
    kind: ExerciseKind
    # Validated by the dataclass EXERCISE_SETTINGS[kind], so each key path names its own kind.
    settings: ExerciseSettings = field(metadata={"schema_by": ("kind", EXERCISE_SETTINGS)})
    dataset: str | None = None

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


def _check_training(alpha: float, epochs: int, batch_size: int | None = None) -> None:
    if not alpha > 0:
        raise ConfigError(f"alpha: expected a number > 0, got {alpha}")
    if epochs < 1:
        raise ConfigError(f"epochs: expected an integer >= 1, got {epochs}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size: expected an integer >= 1 or null, got {batch_size}")


ImageNetModel = Literal["vgg16", "vgg19", "resnet50", "inception_v3", "xception"]


@dataclass(frozen=True)
class ImageNet:
    """Ch 20: classify images with networks pre-trained on ImageNet (keras.applications).

    Off by default: the weights (0.5 GB for a VGG) are never downloaded by the pipeline;
    docs/imagenet.md says where to put them. `weights.<model>` names a file, or `random` for
    untrained weights (a smoke run; the labels then mean nothing)."""

    enabled: bool = False
    models: tuple[ImageNetModel, ...] = ("vgg16", "vgg19", "resnet50", "inception_v3", "xception")
    images: str | None = None  # a folder of images; null: scikit-learn's two sample photos
    weights_dir: str | None = None  # a folder holding Keras' weight file names
    weights: dict[ImageNetModel, str] = field(default_factory=dict)
    labels: str | None = None  # imagenet_class_index.json; null: weights_dir or Keras' cache
    top: int = 5

    def __post_init__(self) -> None:
        if not self.models or len(set(self.models)) != len(self.models):
            raise ConfigError(f"models: expected distinct network names, got {list(self.models)}")
        if not 1 <= self.top <= 1000:
            raise ConfigError(f"top: expected an integer in 1..1000, got {self.top}")


@dataclass(frozen=True)
class Cascade:
    """OpenCV's Haar frontal-face cascade and its detectMultiScale arguments (the book's)."""

    file: str = "haarcascade_frontalface_default.xml"  # a name under cv2.data.haarcascades
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: tuple[int, ...] = (30, 30)  # width, height in pixels

    def __post_init__(self) -> None:
        if not self.scale_factor > 1 or self.min_neighbors < 0:
            raise ConfigError(
                "scale_factor/min_neighbors: expected scale_factor > 1 and min_neighbors >= 0, "
                f"got {self.scale_factor}, {self.min_neighbors}"
            )
        if len(self.min_size) != 2 or min(self.min_size) < 1:
            raise ConfigError(f"min_size: expected [width, height] >= 1, got {list(self.min_size)}")


@dataclass(frozen=True)
class DemoVideo:
    """The default input of `detect`: test-split faces of `dataset` pasted into frames, with
    the pasted boxes and true labels written beside it (`<video>.truth.csv`)."""

    dataset: str = "smiles"
    faces: int = 200  # drawn from the test split, half per class (seeded by `seed`)
    per_frame: int = 2  # faces side by side in one frame
    face_size: int = 128  # the 64x64 crops are enlarged to this...
    margin: float = 0.5  # ...and framed by this fraction of it on each side (edge pixels)
    fps: float = 10.0

    def __post_init__(self) -> None:
        if self.faces < 1 or self.per_frame < 1 or self.face_size < 8:
            raise ConfigError(
                "faces/per_frame/face_size: expected faces >= 1, per_frame >= 1, "
                f"face_size >= 8, got {self.faces}, {self.per_frame}, {self.face_size}"
            )
        if self.margin < 0 or not self.fps > 0:
            raise ConfigError(
                f"margin/fps: expected margin >= 0 and fps > 0, got {self.margin}, {self.fps}"
            )


WEBCAM = "webcam:"  # detect.video: `webcam:<index>` reads OpenCV camera <index>


@dataclass(frozen=True)
class Detect:
    """Ch 22: find faces in a video (Haar cascade) and label each with a smile classifier."""

    experiment: str = "smile_detection"  # whose trained model classifies the faces
    video: str = "data/demo/smiles.avi"  # a video file, or webcam:<index>
    max_frames: int = 0  # stop after this many frames; 0: the whole file (a webcam needs > 0)
    cascade: Cascade = Cascade()
    demo: DemoVideo = DemoVideo()

    def __post_init__(self) -> None:
        if self.max_frames < 0:
            raise ConfigError(f"max_frames: expected an integer >= 0, got {self.max_frames}")
        if self.video.startswith(WEBCAM):
            if not self.video[len(WEBCAM) :].isdigit():
                raise ConfigError(f"video: expected webcam:<index>, got {self.video!r}")
            if self.max_frames == 0:
                raise ConfigError("max_frames: a webcam never ends; set a frame limit > 0")


@dataclass(frozen=True)
class MLflowSettings:
    # Experiments whose model the evaluate stage puts in the MLflow Model Registry, each under
    # its experiment id (a new version per training run).
    register: tuple[str, ...] = ()


@dataclass(frozen=True)
class Params:
    profile: Literal["book", "quick"]
    seed: int = bounded(**SEED)
    preprocess: Preprocess
    datasets: dict[str, Dataset]
    experiments: dict[str, Experiment]
    predictions: dict[str, Prediction] = field(default_factory=dict)
    captcha: Captcha | None = None  # ch 21; its digit crops are the dataset `captcha`
    exercises: dict[str, Exercise] = field(default_factory=dict)  # ch 8-11, 19
    imagenet: ImageNet = ImageNet()  # ch 20
    detect: Detect = Detect()  # ch 22: faces + smile classifier on a video
    mlflow: MLflowSettings = MLflowSettings()

    def dataset(self, name: str) -> Dataset:
        if name == CAPTCHA and self.captcha is not None:
            return self.captcha.dataset()
        if name not in self.datasets:
            raise ConfigError(
                f"unknown dataset {name!r}; params.yaml declares {self.dataset_names()}"
            )
        return self.datasets[name]

    def dataset_names(self) -> list[str]:
        return sorted(set(self.datasets) | ({CAPTCHA} if self.captcha else set()))

    def experiment(self, exp_id: str) -> Experiment:
        if exp_id not in self.experiments:
            raise ConfigError(
                f"unknown experiment {exp_id!r}; params.yaml declares {sorted(self.experiments)}"
            )
        return self.experiments[exp_id]

    def exercise(self, exercise_id: str) -> Exercise:
        if exercise_id not in self.exercises:
            raise ConfigError(
                f"unknown exercise {exercise_id!r}; params.yaml declares {sorted(self.exercises)}"
            )
        return self.exercises[exercise_id]


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word; a key written twice (an edit
    by hand beside one by `dvc exp run -S`) would silently drop the first value."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` overrides on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = lines.get(key)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                continue
            if first is not None:
                raise ConfigError(
                    f"line {line}: duplicate key {key!r} (first on line {first}); "
                    "YAML would keep only the last value"
                )
            lines[key] = line
        return super().construct_mapping(node, deep=deep)


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # a SafeLoader
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (run from the repository root)") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    return parse_params(raw, source=str(path))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message spans several lines; a stage reports one."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return where + " ".join(problem.split())


def parse_params(raw: Any, source: str = PARAMS_FILE) -> Params:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    profile = raw.get("profile", "book")
    params = _build_profile(raw, profile, source)
    # Build the other profile too, so a typo in a `quick:` block fails under `profile: book`;
    # second, so an error of the shared settings is not reported as the other profile's.
    for other in {"book", "quick"} - {profile}:
        _build_profile(raw, other, source)
    for exp in params.experiments.values():
        if exp.dataset not in params.dataset_names():
            raise ConfigError(
                f"{source}: experiments.{exp.id}.dataset: {exp.dataset!r} is not one of the "
                f"declared datasets {params.dataset_names()}"
            )
    _check_captcha(params, source)
    for exp_id in params.mlflow.register:
        if exp_id not in params.experiments:
            raise ConfigError(
                f"{source}: mlflow.register: {exp_id!r} is not one of the declared experiments "
                f"{sorted(params.experiments)}"
            )
    for ex in params.exercises.values():
        if ex.dataset is not None and ex.dataset not in params.dataset_names():
            raise ConfigError(
                f"{source}: exercises.{ex.id}.dataset: {ex.dataset!r} is not one of the "
                f"declared datasets {params.dataset_names()}"
            )
    for pred in params.predictions.values():
        exp = params.experiments.get(pred.experiment)
        if exp is None or not exp.is_keras:
            keras_ids = sorted(e.id for e in params.experiments.values() if e.is_keras)
            raise ConfigError(
                f"{source}: predictions.{pred.id}.experiment: {pred.experiment!r} is not one of "
                f"the Keras experiments {keras_ids}"
            )
        if pred.dataset != exp.dataset:
            raise ConfigError(
                f"{source}: predictions.{pred.id}.dataset: expected {exp.dataset!r}, the "
                f"dataset of experiment {exp.id!r}, got {pred.dataset!r}"
            )
    return params


def _check_captcha(params: Params, source: str) -> None:
    for name, dataset in params.datasets.items():
        if name == CAPTCHA or dataset.source.format == "captcha":
            raise ConfigError(
                f"{source}: datasets.{name}: the captcha dataset is declared by the top-level "
                "captcha: section, not under datasets"
            )
    if params.captcha is None:
        return
    solved = params.captcha.solve.experiment
    exp = params.experiments.get(solved)
    if exp is None or exp.dataset != CAPTCHA:
        raise ConfigError(
            f"{source}: captcha.solve.experiment: {solved!r} is not an experiment on the "
            f"captcha dataset"
        )


def _build_profile(raw: dict, profile: Any, source: str) -> Params:
    raw = {
        **raw,
        "datasets": _apply_profile(raw.get("datasets"), profile, "datasets"),
        "experiments": _apply_profile(raw.get("experiments"), profile, "experiments"),
    }
    if "captcha" in raw:  # each part (source, solve...) may carry its own quick: overrides
        raw["captcha"] = _apply_profile(raw["captcha"], profile, "captcha")
    if "exercises" in raw:
        raw["exercises"] = _apply_profile(raw["exercises"], profile, "exercises")
    if "detect" in raw:  # detect.demo may carry quick: overrides
        raw["detect"] = _apply_profile(raw["detect"], profile, "detect")
    try:
        return _build(Params, raw, "")
    except ConfigError as exc:
        where = (
            f" (with profile {profile} applied)" if profile != raw.get("profile", "book") else ""
        )
        raise ConfigError(f"{source}{where}: {exc}") from None


def build(cls: type, data: Any, where: str) -> Any:
    """Validate a mapping from outside params.yaml (a mirror manifest) against a schema."""
    try:
        return _build(cls, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _apply_profile(section: Any, profile: Any, name: str) -> Any:
    """Merge each entry's `quick:` overrides when the quick profile is on, then drop them."""
    if not isinstance(section, dict):
        return section
    merged = {}
    for key, entry in section.items():
        if not isinstance(entry, dict):
            merged[key] = entry
            continue
        entry = dict(entry)
        overrides = entry.pop("quick", None) or {}
        if not isinstance(overrides, dict):
            raise ConfigError(f"{name}.{key}.quick: expected a mapping of overrides")
        merged[key] = _deep_merge(entry, overrides) if profile == "quick" else entry
    return merged


def _deep_merge(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _build(cls: type, data: Any, path: str, key: str | None = None) -> Any:
    where = path or "top level"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    settable = {n for n, f in fields.items() if not f.metadata.get("from_key")}
    unknown = sorted(set(data) - settable)
    if unknown:
        raise ConfigError(
            f"{_join(path, unknown[0])}: unknown key; allowed keys here: {sorted(settable)}"
        )
    kwargs = {}
    for name, fld in fields.items():
        if fld.metadata.get("from_key"):
            kwargs[name] = key
        elif name in data:
            tp = hints[name]
            if "schema_by" in fld.metadata:  # the schema is chosen by an earlier key's value
                by, schemas = fld.metadata["schema_by"]
                tp = schemas[kwargs[by]]
            kwargs[name] = _coerce(tp, data[name], _join(path, name))
            if "bounds" in fld.metadata:
                fld.metadata["bounds"].check(kwargs[name], tp, _join(path, name))
        elif fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_join(path, name)}: missing required key")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(_join(path, str(exc))) from None


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        errors = []
        for member in typing.get_args(tp):
            try:
                return _coerce(member, value, path)
            except ConfigError as exc:
                if str(exc).startswith(f"{path}."):
                    raise  # the value has this member's shape: report its inner key path
                errors.append(str(exc).split(": ", 1)[-1])
        raise ConfigError(f"{path}: {' or '.join(errors)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{path}: expected null, got {_show(value)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed and type(value) in {type(a) for a in allowed}:
            return value
        raise ConfigError(f"{path}: expected one of {list(allowed)}, got {_show(value)}")
    if origin is tuple:
        item_tp = typing.get_args(tp)[0]
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {_show(value)}")
        return tuple(_coerce(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {_show(value)}")
        if dataclasses.is_dataclass(value_tp):
            return {
                str(k): _build(value_tp, v, _join(path, str(k)), str(k)) for k, v in value.items()
            }
        return {
            _coerce(key_tp, k, path): _coerce(value_tp, v, _join(path, str(k)))
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {_show(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected an integer, got {_show(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{path}: expected a number, got {_show(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {_show(value)}")
    raise TypeError(f"config schema uses an unsupported type {tp!r} at {path}")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"

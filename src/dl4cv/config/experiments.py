"""`experiments:` (a model trained and evaluated on a dataset) and `predictions:` (ch 13)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from dl4cv.config.base import KEY, Bool, Chapter, ConfigError, Int, Number, Seed, spec


@spec
class ModelSpec:
    name: Literal["knn", "shallownet", "lenet", "minivggnet", "mlp"]
    batch_norm: Bool = True  # minivggnet
    hidden: tuple[Int, ...] = (256, 128)  # mlp: hidden layer sizes
    activation: Literal["sigmoid", "relu"] = "sigmoid"  # mlp: hidden activation
    n_neighbors: Int = Field(1, ge=1)
    metric: Literal["euclidean", "manhattan"] = "euclidean"

    def __post_init__(self) -> None:
        if min(self.hidden, default=1) < 1:
            raise ConfigError(f"hidden: expected layer sizes >= 1, got {list(self.hidden)}")


@spec
class OptimizerSpec:
    name: Literal["sgd", "adam"] = "sgd"
    learning_rate: Number = Field(0.01, gt=0)
    momentum: Number = Field(0.0, ge=0, le=1)  # Keras' SGD accepts [0, 1]
    nesterov: Bool = False
    # Keras 2 time-based decay: lr_t = lr0 / (1 + decay * t), t in optimizer steps.
    decay: Number = Field(0.0, ge=0)
    # The book's ch 16 step decay: lr = lr0 * step_factor ** floor((1 + epoch) / step_every).
    step_factor: Number | None = None
    step_every: Int = 5

    def __post_init__(self) -> None:
        if self.step_factor is not None:
            if self.decay:
                raise ConfigError("step_factor: use either decay (per step) or step_factor")
            if not 0 < self.step_factor <= 1 or self.step_every < 1:
                raise ConfigError(
                    "step_factor/step_every: expected 0 < step_factor <= 1 and step_every >= 1, "
                    f"got {self.step_factor} and {self.step_every}"
                )


@spec
class TrainSpec:
    batch_size: Int = Field(32, ge=1)
    epochs: Int = Field(10, ge=1)
    monitor: Literal["val_loss", "val_accuracy", "loss", "accuracy"] = "val_loss"
    steps_per_execution: Int = Field(1, ge=1)  # keras runner only
    jit_compile: Literal["auto"] | Bool = "auto"  # keras runner only (scan always compiles)
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
    checkpoint_interval_s: Number = Field(10.0, ge=0)
    # best: one file, overwritten on each improvement of `monitor` (ch 18 checkpoint_best).
    # improvements: also one weights file per improvement, weights-{epoch:03d}-{monitor:.4f}.
    checkpoint: Literal["best", "improvements"] = "best"
    # The ch 17 TrainingMonitor: history JSON and curves PNG rewritten after every epoch.
    training_monitor: Bool = False
    # balanced: weight each class by (largest class count / its count) on the training split,
    # as the book's ch 22 does for the smile classes.
    class_weight: Literal["none", "balanced"] = "none"


@spec
class EvaluateSpec:
    # The book reports the model as it stands after the last epoch; `best` uses the checkpoint.
    checkpoint: Literal["final", "best"] = "final"


@spec
class Experiment:
    id: Annotated[str, KEY]
    chapter: Chapter
    dataset: str
    model: ModelSpec
    optimizer: OptimizerSpec = OptimizerSpec()
    train: TrainSpec = TrainSpec()
    evaluate: EvaluateSpec = EvaluateSpec()

    @property
    def is_keras(self) -> bool:
        return self.model.name != "knn"


@spec
class Prediction:
    """The book's ch 13: reload a trained model in a stage of its own and label sample images."""

    id: Annotated[str, KEY]
    chapter: Chapter
    experiment: str  # a Keras experiment of `experiments`, trained first
    # The experiment's dataset, named again so dvc.yaml can depend on exactly its files.
    dataset: str
    samples: Int = Field(10, ge=1)  # test images drawn at random (seeded)
    seed: Seed = 42

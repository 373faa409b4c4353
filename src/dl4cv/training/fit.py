"""Fit an experiment's Keras 3 network.

The Keras path resumes from `resume_dir` when an unfinished state for the same params is there,
and always ends with `epochs` epochs in the history.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import keras

from dl4cv.config import Experiment, ModelSpec
from dl4cv.nn.conv import LeNet, MiniVGGNet, ShallowNet
from dl4cv.training.callbacks import EpochStats
from dl4cv.training.checkpoints import BestCheckpoint, ResumeCheckpoint, remove_stale_files
from dl4cv.training.inputs import Arrays
from dl4cv.training.optimizers import build_optimizer
from dl4cv.training.state import TrainingState

log = logging.getLogger(__name__)


def build_model(spec: ModelSpec, shape: tuple[int, int, int], classes: int) -> keras.Model:
    height, width, depth = shape
    if spec.name == "shallownet":
        return ShallowNet.build(width, height, depth, classes)
    if spec.name == "lenet":
        return LeNet.build(width, height, depth, classes)
    if spec.name == "minivggnet":
        return MiniVGGNet.build(width, height, depth, classes, batch_norm=spec.batch_norm)
    raise ValueError(f"model {spec.name!r} is not a Keras network")


def fit_keras(
    exp: Experiment,
    data: Arrays,
    state: TrainingState,
    resume_dir: Path,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = 2,
) -> keras.Model:
    """Train to `exp.train.epochs` epochs, continuing from `state` if it has finished epochs.

    `callbacks` run after the epoch statistics are added and before the checkpoints.
    """
    resume_dir.mkdir(parents=True, exist_ok=True)
    if state.completed:
        model = keras.models.load_model(resume_dir / str(state.model_file))
    else:
        remove_stale_files(resume_dir, state)  # checkpoints of an earlier, other training
        model = build_model(exp.model, data.x_train.shape[1:], len(data.classes))
        model.compile(
            optimizer=build_optimizer(exp.optimizer),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=exp.train.steps_per_execution,
            jit_compile=exp.train.jit_compile,
        )
    best = BestCheckpoint(
        resume_dir / "best-{epoch:04d}.keras",
        exp.train.monitor,
        state.best,
        resume_dir / state.best_file if state.best_file else None,
    )
    model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        batch_size=exp.train.batch_size,
        epochs=exp.train.epochs,
        initial_epoch=state.completed,
        # Extra callbacks (MLflow) see an epoch before it is checkpointed: a kill never leaves
        # an epoch in the saved state that they missed (at worst they see it twice).
        callbacks=[EpochStats(), *callbacks, best, ResumeCheckpoint(resume_dir, state, best)],
        verbose=verbose,
    )
    return model

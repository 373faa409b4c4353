"""Fit an experiment's Keras 3 network.

Training resumes from `resume_dir` when an unfinished state for the same params is there, and
always ends with `epochs` epochs in the history. `train.runner` picks the loop: `keras`
(`model.fit`, any backend) or `scan` (dl4cv.training.jax_epochs: one jitted epoch, JAX only);
both run the same callbacks at each epoch's end. `auto` (the default) is resolved by `resolve`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import keras

from dl4cv.config import ConfigError, Experiment, ModelSpec
from dl4cv.nn.conv import LeNet, MiniVGGNet, ShallowNet
from dl4cv.nn.mlp import MLP
from dl4cv.runtime import backend
from dl4cv.training.callbacks import EpochStats
from dl4cv.training.checkpoints import (
    IMPROVEMENT_TEMPLATE,
    BestCheckpoint,
    ResumeCheckpoint,
    prune_improvements,
    remove_stale_files,
)
from dl4cv.training.inputs import Arrays, balanced_class_weights
from dl4cv.training.optimizers import build_optimizer
from dl4cv.training.state import TrainingState
from dl4cv.training.step_decay import step_decay_callback

log = logging.getLogger(__name__)

IMPROVEMENTS_DIR = "improvements"  # ch 18: one weights file per improvement, under resume_dir
# Models that `dtype_policy: auto` trains in bfloat16 on an accelerator. MiniVGGNet on an H100:
# 0.47 -> 0.35 s/epoch, test accuracy 0.802 (fit, float32) vs 0.803 (scan, bf16), and the whole
# family within half a point but lr_step_decay_f025 (-0.7, one seed); ShallowNet and the MLP
# gain nothing (0.128 vs 0.125 s/epoch) and stay float32 (bench/results/h100-2026-11-25*).
BFLOAT16_MODELS = frozenset({"minivggnet"})


def build_model(spec: ModelSpec, shape: tuple[int, int, int], classes: int) -> keras.Model:
    height, width, depth = shape
    if spec.name == "shallownet":
        return ShallowNet.build(width, height, depth, classes)
    if spec.name == "lenet":
        return LeNet.build(width, height, depth, classes)
    if spec.name == "minivggnet":
        return MiniVGGNet.build(width, height, depth, classes, batch_norm=spec.batch_norm)
    if spec.name == "mlp":
        return MLP.build(shape, classes, hidden=spec.hidden, activation=spec.activation)
    raise ValueError(f"model {spec.name!r} is not a Keras network")


def build_with_policy(
    spec: ModelSpec, shape: tuple[int, int, int], classes: int, dtype_policy: str
) -> keras.Model:
    """`build_model` under the dtype policy `dtype_policy`; the global policy is restored after,
    so the layers carry it (and save it) while nothing else built later is affected."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype_policy)
    try:
        return build_model(spec, shape, classes)
    finally:
        keras.config.set_dtype_policy(previous)


def resolve(exp: Experiment) -> Experiment:
    """`exp` with `runner` and `dtype_policy` made concrete for this process's backend and
    device: `auto` is the scan runner on an accelerated JAX backend and `model.fit` elsewhere,
    so params.yaml stays the same on every machine and a CPU run keeps its results."""
    train = exp.train
    accelerated = "auto" in (train.runner, train.dtype_policy) and backend.accelerated()
    runner = train.runner if train.runner != "auto" else ("scan" if accelerated else "keras")
    policy = train.dtype_policy
    if policy == "auto":
        bf16 = accelerated and exp.model.name in BFLOAT16_MODELS
        policy = "mixed_bfloat16" if bf16 else "float32"
    return dataclasses.replace(
        exp, train=dataclasses.replace(train, runner=runner, dtype_policy=policy)
    )


def check_runner(exp: Experiment) -> None:
    """The scan runner needs the JAX backend (params.yaml itself is backend-independent)."""
    if exp.train.runner == "scan" and backend.name() != "jax":
        raise ConfigError(
            f"experiments.{exp.id}.train.runner: 'scan' runs on the JAX backend only, but Keras "
            f"runs on {backend.name()!r}; set KERAS_BACKEND=jax or use runner 'keras'"
        )


def _schedules(exp: Experiment) -> list[keras.callbacks.Callback]:
    """Epoch-level learning-rate schedules, set before each epoch begins."""
    spec = exp.optimizer
    if spec.step_factor is None:
        return []
    return [step_decay_callback(spec.learning_rate, spec.step_factor, spec.step_every)]


def fit_keras(
    exp: Experiment,
    data: Arrays,
    state: TrainingState,
    resume_dir: Path,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = 2,
    seed: int = 0,
    spare: Path | None = None,
) -> keras.Model:
    """Train to `exp.train.epochs` epochs, continuing from `state` if it has finished epochs.

    `callbacks` run after the epoch statistics are added and before the checkpoints. `seed`
    draws the scan runner's shuffles (the keras runner shuffles with NumPy's global state).
    `spare`: where a copy of each saved state is kept too (ResumeCheckpoint).
    """
    exp = resolve(exp)
    check_runner(exp)
    resume_dir.mkdir(parents=True, exist_ok=True)
    if state.completed:
        model = keras.models.load_model(resume_dir / str(state.model_file))
    else:
        remove_stale_files(resume_dir, state)  # checkpoints of an earlier, other training
        model = build_with_policy(
            exp.model, data.x_train.shape[1:], len(data.classes), exp.train.dtype_policy
        )
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
    resume = ResumeCheckpoint(resume_dir, state, best, exp.train.checkpoint_interval_s, spare=spare)
    prune_improvements(resume_dir / IMPROVEMENTS_DIR, state.completed)
    improvements = (
        [
            BestCheckpoint(
                resume_dir / IMPROVEMENTS_DIR / (IMPROVEMENT_TEMPLATE % exp.train.monitor),
                exp.train.monitor,
                state.best,
                weights_only=True,
            )
        ]
        if exp.train.checkpoint == "improvements"
        else []
    )
    # Extra callbacks (MLflow) see an epoch before it is checkpointed: a kill never leaves an
    # epoch in the saved state that they missed (at worst they see it twice).
    every_epoch = [*_schedules(exp), EpochStats(), *callbacks, *improvements, best, resume]
    class_weight = (
        balanced_class_weights(data.y_train, len(data.classes))
        if exp.train.class_weight == "balanced"
        else None
    )
    if exp.train.runner == "scan":
        from dl4cv.training.jax_epochs import fit_scan  # imports JAX: the scan runner only

        fit_scan(
            model,
            data,
            exp.train.batch_size,
            exp.train.epochs,
            initial_epoch=state.completed,
            seed=seed,
            callbacks=every_epoch,
            verbose=verbose,
            class_weight=class_weight,
        )
        return model
    model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        batch_size=exp.train.batch_size,
        epochs=exp.train.epochs,
        initial_epoch=state.completed,
        callbacks=every_epoch,
        verbose=verbose,
        class_weight=class_weight,
    )
    return model

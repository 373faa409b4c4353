"""A JAX-only epoch runner for a compiled Keras 3 model: one jitted call per epoch.

Keras 3.15's JAX `fit` dispatches one jitted `train_step` per batch from Python (with
`steps_per_execution > 1` it still loops in Python over single-step calls), so a small network
like MiniVGGNet spends most of its time in host overhead, not on the GPU. This runner keeps the
training data on the device and runs a whole epoch inside one `jax.jit` with `jax.lax.scan`
over Keras's own stateless `model.train_step` (same loss, metrics, optimizer, learning-rate
schedule, dropout seeds and BatchNormalization updates as `fit`); validation is a scan over
`model.test_step`. Model code stays plain Keras: only this module touches JAX.

Differences from `model.fit`: the epoch's shuffle is drawn with `jax.random` (not NumPy); the
last, partial batch is still trained (like `fit`), as a separate step inside the same jit; no
per-batch callbacks run, and the epoch callbacks are this module's own (history + timing).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import keras
import numpy as np


def _state(model: keras.Model, optimizer: bool, purge: bool) -> tuple:
    return model._get_jax_state(
        trainable_variables=True,
        non_trainable_variables=True,
        optimizer_variables=optimizer,
        metrics_variables=True,
        purge_model_variables=purge,
    )


def _sync(model: keras.Model, state: tuple, optimizer: bool) -> None:
    names = ["trainable_variables", "non_trainable_variables"]
    names += ["optimizer_variables", "metrics_variables"] if optimizer else ["metrics_variables"]
    model._jax_state = dict(zip(names, state, strict=True))
    model._jax_state_synced = False
    model.jax_state_sync()


def make_train_epoch(model: keras.Model, n: int, batch_size: int, unroll: int = 1) -> Callable:
    steps, rest = divmod(n, batch_size)

    def epoch(state, x, y, key):
        perm = jax.random.permutation(key, n)
        batches = perm[: steps * batch_size].reshape(steps, batch_size)

        def body(state, idx):
            _, state = model.train_step(state, (x[idx], y[idx]))
            return state, None

        state, _ = jax.lax.scan(body, state, batches, unroll=unroll)
        if rest:
            idx = perm[steps * batch_size :]
            _, state = model.train_step(state, (x[idx], y[idx]))
        return state

    return jax.jit(epoch, donate_argnums=0)


def make_test_epoch(model: keras.Model, n: int, batch_size: int) -> Callable:
    steps, rest = divmod(n, batch_size)

    def evaluate(state, x, y):
        def body(state, i):
            xb = jax.lax.dynamic_slice_in_dim(x, i * batch_size, batch_size)
            yb = jax.lax.dynamic_slice_in_dim(y, i * batch_size, batch_size)
            _, state = model.test_step(state, (xb, yb))
            return state, None

        state, _ = jax.lax.scan(body, state, jnp.arange(steps))
        if rest:
            _, state = model.test_step(state, (x[steps * batch_size :], y[steps * batch_size :]))
        return state

    return jax.jit(evaluate)


def fit_scan(
    model: keras.Model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    batch_size: int,
    epochs: int,
    seed: int = 42,
    val_batch_size: int = 1000,
    unroll: int = 1,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, list[float]]:
    """Train a compiled model for `epochs` epochs; returns the Keras-style history (plus
    `epoch_seconds`, wall time of the epoch including validation, `train_seconds`, the part
    before validation, and `lr`)."""
    model._symbolic_build(data_batch=(x_train[:batch_size], y_train[:batch_size]))
    started = time.perf_counter()
    x, y = jax.device_put(x_train), jax.device_put(y_train)
    xv, yv = jax.device_put(x_val), jax.device_put(y_val)
    jax.block_until_ready((x, y, xv, yv))
    upload_seconds = time.perf_counter() - started
    train_epoch = make_train_epoch(model, len(x_train), batch_size, unroll)
    test_epoch = make_test_epoch(model, len(x_val), val_batch_size)
    key = jax.random.PRNGKey(seed)
    history: dict[str, list[float]] = {"upload_seconds": [upload_seconds]}
    for epoch in range(epochs):
        start = time.perf_counter()
        key, sub = jax.random.split(key)
        model.reset_metrics()
        state = train_epoch(_state(model, optimizer=True, purge=True), x, y, sub)
        jax.block_until_ready(state)
        train_seconds = time.perf_counter() - start
        _sync(model, state, optimizer=True)
        logs = {k: float(v) for k, v in model.get_metrics_result().items()}
        model.reset_metrics()
        tv, ntv, mv = _state(model, optimizer=False, purge=False)
        _, _, mv = test_epoch((tv, ntv, mv), xv, yv)
        for ref, value in zip(model.metrics_variables, mv, strict=True):
            ref.assign(value)
        logs |= {f"val_{k}": float(v) for k, v in model.get_metrics_result().items()}
        logs["epoch_seconds"] = time.perf_counter() - start
        logs["train_seconds"] = train_seconds
        logs["lr"] = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        for k, v in logs.items():
            history.setdefault(k, []).append(v)
        if on_epoch_end is not None:
            on_epoch_end(epoch, logs)
        if should_stop is not None and should_stop():
            break
    model.optimizer.finalize_variable_values(model.trainable_weights)
    return history

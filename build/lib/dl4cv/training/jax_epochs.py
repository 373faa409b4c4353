"""The `scan` runner: one jitted call per epoch for a compiled Keras 3 model (JAX backend only).

This is the only module of the package that imports JAX; model code stays plain Keras.

Keras's JAX `fit` dispatches one jitted `train_step` per batch from Python (with
`steps_per_execution > 1` it still loops in Python over single-step calls), so a small network
like MiniVGGNet spends most of its time in host overhead, not on the GPU (1.83 s/epoch on an
H100 against 0.47 s/epoch here, bench/README.md). This runner keeps the training data on the
device and runs a whole epoch inside one `jax.jit` with `jax.lax.scan` over Keras's own
stateless `model.train_step` (same loss, metrics, optimizer, learning-rate schedule, dropout
seeds and BatchNormalization updates as `fit`); validation is a scan over `model.test_step`.

Differences from `model.fit`: each epoch's shuffle is drawn with `jax.random` from
(seed, epoch), so a resumed training shuffles as an uninterrupted one would; the last, partial
batch is still trained (like `fit`), as a separate step inside the same jit; callbacks run at
epoch level only (train begin/end, epoch begin/end), never per batch; `steps_per_execution`
and `jit_compile` do not apply. Class weights become per-sample weights, as `fit` makes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import keras
import numpy as np

from dl4cv.training.inputs import Arrays


def _state(model: keras.Model, optimizer: bool, purge: bool) -> tuple:
    return model._get_jax_state(
        trainable_variables=True,
        non_trainable_variables=True,
        optimizer_variables=optimizer,
        metrics_variables=True,
        purge_model_variables=purge,
    )


def _sync(model: keras.Model, state: tuple) -> None:
    """Put a full training state (as `_state(model, optimizer=True)`) back into the Keras
    variables, so that callbacks (checkpoints) see the current weights and optimizer."""
    names = ["trainable_variables", "non_trainable_variables", "optimizer_variables"]
    model._jax_state = dict(zip([*names, "metrics_variables"], state, strict=True))
    model._jax_state_synced = False
    model.jax_state_sync()


def make_train_epoch(model: keras.Model, n: int, batch_size: int, unroll: int = 1) -> Callable:
    """jit(state, x, y, w, key) -> state: one shuffled pass over the n training samples, each
    sample's loss weighted by w (ones when there are no class weights)."""
    steps, rest = divmod(n, batch_size)

    def epoch(state, x, y, w, key):
        perm = jax.random.permutation(key, n)
        batches = perm[: steps * batch_size].reshape(steps, batch_size)

        def body(state, idx):
            _, state = model.train_step(state, (x[idx], y[idx], w[idx]))
            return state, None

        state, _ = jax.lax.scan(body, state, batches, unroll=unroll)
        if rest:
            idx = perm[steps * batch_size :]
            _, state = model.train_step(state, (x[idx], y[idx], w[idx]))
        return state

    return jax.jit(epoch, donate_argnums=0)


def make_test_epoch(model: keras.Model, n: int, batch_size: int) -> Callable:
    """jit(state, x, y) -> state: the metrics over the n validation samples, in order."""
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


def sample_weights(labels: np.ndarray, class_weight: dict[int, float] | None) -> np.ndarray:
    """Each sample's loss weight: its class's weight, or 1 (what `fit` derives from
    `class_weight`)."""
    if class_weight is None:
        return np.ones(len(labels), np.float32)
    table = np.ones(max(class_weight) + 1, np.float32)
    for label, weight in class_weight.items():
        table[label] = weight
    return table[np.asarray(labels).reshape(-1)]


def epoch_key(seed: int, epoch: int) -> jax.Array:
    """The shuffle key of an epoch: a function of (seed, epoch) only."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), epoch)


def fit_scan(
    model: keras.Model,
    arrays: Arrays,
    batch_size: int,
    epochs: int,
    initial_epoch: int = 0,
    seed: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = 0,
    val_batch_size: int = 1000,
    unroll: int = 1,
    class_weight: dict[int, float] | None = None,
) -> keras.callbacks.History:
    """Train a compiled model from epoch `initial_epoch` to `epochs` (like `model.fit`).

    `callbacks` run in a `keras.callbacks.CallbackList` at epoch level, with the logs
    {loss, accuracy, val_loss, val_accuracy} (whatever the model's metrics are, as `fit` names
    them); the Keras variables hold the epoch's weights and optimizer state when
    `on_epoch_end` runs. Honors `model.stop_training`. `class_weight` weights each training
    sample's loss by its class's weight (validation stays unweighted, as in `fit`). Returns the
    History of these epochs.
    """
    if keras.backend.backend() != "jax":
        raise RuntimeError(
            f"fit_scan needs KERAS_BACKEND=jax; Keras runs on {keras.backend.backend()}"
        )
    x_train, y_train = arrays.x_train, arrays.y_train
    model._symbolic_build(data_batch=(x_train[:batch_size], y_train[:batch_size]))
    x, y = jax.device_put(x_train), jax.device_put(y_train)
    w = jax.device_put(sample_weights(y_train, class_weight))
    xv, yv = jax.device_put(arrays.x_val), jax.device_put(arrays.y_val)
    train_epoch = make_train_epoch(model, len(x_train), batch_size, unroll)
    test_epoch = make_test_epoch(model, len(arrays.x_val), min(val_batch_size, len(arrays.x_val)))

    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(
        [*callbacks, history],
        add_progbar=verbose != 0,
        model=model,
        verbose=verbose,
        epochs=epochs,
        steps=-(-len(x_train) // batch_size),
    )
    model.stop_training = False
    callback_list.on_train_begin()
    logs: dict = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        state = train_epoch(
            _state(model, optimizer=True, purge=True), x, y, w, epoch_key(seed, epoch)
        )
        _sync(model, state)
        logs = {k: float(v) for k, v in model.get_metrics_result().items()}
        model.reset_metrics()
        trainable, non_trainable, metrics = _state(model, optimizer=False, purge=False)
        _, _, metrics = test_epoch((trainable, non_trainable, metrics), xv, yv)
        for ref, value in zip(model.metrics_variables, metrics, strict=True):
            ref.assign(value)
        logs |= {f"val_{k}": float(v) for k, v in model.get_metrics_result().items()}
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    model.optimizer.finalize_variable_values(model.trainable_weights)
    callback_list.on_train_end(logs)
    return history

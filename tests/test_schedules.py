"""The book's Keras 2 `SGD(decay=...)`: lr_t = lr0 / (1 + decay * t), t in optimizer steps."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from dl4cv.config import OptimizerSpec
from dl4cv.training.callbacks import EpochStats
from dl4cv.training.optimizers import build_optimizer, current_learning_rate
from dl4cv.training.schedules import time_based_decay


def keras2_lr(lr0: float, decay: float, t: int) -> float:
    return lr0 / (1.0 + decay * t)


def at(schedule, t: int) -> float:
    return float(keras.ops.convert_to_numpy(schedule(t)))


@pytest.mark.parametrize(("lr0", "decay"), [(0.01, 0.01 / 40), (0.05, 0.5), (0.1, 1e-3)])
def test_time_based_decay_is_the_keras2_formula(lr0, decay):
    schedule = time_based_decay(lr0, decay)
    for t in (0, 1, 2, 7, 100, 781, 31_240):
        assert at(schedule, t) == pytest.approx(keras2_lr(lr0, decay, t), rel=1e-6)


def test_time_based_decay_is_smooth_not_staircase():
    schedule = time_based_decay(0.1, 0.5)
    values = [at(schedule, t) for t in range(6)]
    assert all(b < a for a, b in zip(values, values[1:], strict=False))


def test_no_decay_is_a_constant():
    value = time_based_decay(0.005, 0.0)
    assert value == 0.005
    assert isinstance(value, float)


def test_build_optimizer_settings():
    sgd = build_optimizer(OptimizerSpec("sgd", 0.01, momentum=0.9, nesterov=True, decay=0.0))
    assert isinstance(sgd, keras.optimizers.SGD)
    assert sgd.momentum == pytest.approx(0.9)
    assert sgd.nesterov is True
    assert current_learning_rate(sgd) == pytest.approx(0.01)
    adam = build_optimizer(OptimizerSpec("adam", 0.001, decay=0.5))
    assert isinstance(adam, keras.optimizers.Adam)
    # The decay applies to Adam as well: after two steps the rate is lr0 / (1 + 0.5 * 2).
    w = keras.Variable(np.zeros(1, dtype=np.float32))
    for _ in range(2):
        adam.apply_gradients([(keras.ops.ones((1,)), w)])
    assert current_learning_rate(adam) == pytest.approx(keras2_lr(0.001, 0.5, 2), rel=1e-6)


def test_each_update_uses_the_rate_before_the_step_count_grows():
    """Keras 2 applied step k (0-based) with lr0 / (1 + decay * k): the first update is lr0."""
    lr0, decay = 0.1, 0.5
    optimizer = build_optimizer(OptimizerSpec("sgd", lr0, decay=decay))
    w = keras.Variable(np.zeros(1, dtype=np.float32))
    expected = 0.0
    for k in range(4):
        optimizer.apply_gradients([(keras.ops.ones((1,)), w)])
        expected -= keras2_lr(lr0, decay, k)  # gradient 1: w moves by exactly -lr_k
        assert float(keras.ops.convert_to_numpy(w)[0]) == pytest.approx(expected, rel=1e-6)
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 4
    assert current_learning_rate(optimizer) == pytest.approx(keras2_lr(lr0, decay, 4), rel=1e-6)


def test_sgd_rate_after_real_training_steps():
    lr0, decay, batch, n, epochs = 0.05, 0.1, 4, 20, 2
    steps = n // batch * epochs
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((n, 6), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(2, activation="softmax")], name="tiny"
    )
    model.compile(
        optimizer=build_optimizer(OptimizerSpec("sgd", lr0, momentum=0.9, decay=decay)),
        loss="sparse_categorical_crossentropy",
    )
    history = model.fit(
        x, y, batch_size=batch, epochs=epochs, callbacks=[EpochStats()], verbose=0
    ).history
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == steps
    lr = current_learning_rate(model.optimizer)
    assert lr == pytest.approx(keras2_lr(lr0, decay, steps), rel=1e-6)
    assert lr < lr0
    # EpochStats logs the rate each epoch ends with: t = steps per epoch * epochs done.
    per_epoch = n // batch
    assert history["lr"] == pytest.approx(
        [keras2_lr(lr0, decay, per_epoch * (e + 1)) for e in range(epochs)], rel=1e-6
    )
    assert all(s >= 0 for s in history["epoch_seconds"])

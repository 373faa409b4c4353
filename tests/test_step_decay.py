"""Ch 16 step decay: lr = lr0 * F ** floor((1 + epoch) / 5), by hand and inside a real fit."""

from __future__ import annotations

import cv2
import keras
import numpy as np
import pytest

from dl4cv.evaluation import plot_learning_rates
from dl4cv.training.optimizers import current_learning_rate
from dl4cv.training.step_decay import (
    learning_rates,
    step_decay,
    step_decay_callback,
    step_decay_schedule,
)

# Hand-computed for lr0 0.01, drop every 5: floor((1 + e) / 5) is 0 for e 0..3, 1 for 4..8,
# 2 for 9..12 (the first drop lands on epoch index 4, the 5th epoch).
EXPECTED = {
    0.25: [0.01] * 4 + [0.0025] * 5 + [0.000625] * 4,
    0.5: [0.01] * 4 + [0.005] * 5 + [0.0025] * 4,
}


@pytest.mark.parametrize("factor", sorted(EXPECTED))
def test_step_decay_hand_computed(factor):
    got = [step_decay(e, 0.01, factor, 5) for e in range(13)]
    assert got == pytest.approx(EXPECTED[factor], rel=1e-12)


def test_schedule_ignores_the_current_rate_so_a_resume_gets_the_same_rates():
    schedule = step_decay_schedule(0.01, 0.5, 5)
    assert schedule(9, 123.0) == pytest.approx(0.0025)
    assert schedule(9, 1e-9) == pytest.approx(0.0025)
    assert learning_rates(schedule, 13, 0.01) == pytest.approx(EXPECTED[0.5])


@pytest.mark.parametrize(
    ("lr0", "factor", "drop_every", "match"),
    [
        (0.0, 0.5, 5, "initial_lr"),
        (0.01, 0.0, 5, "factor"),
        (0.01, 1.5, 5, "factor"),
        (0.01, 0.5, 0, "drop_every"),
        (0.01, 0.5, 2.5, "drop_every"),
    ],
)
def test_bad_settings_are_refused(lr0, factor, drop_every, match):
    with pytest.raises(ValueError, match=match):
        step_decay_schedule(lr0, factor, drop_every)
    with pytest.raises(ValueError, match="epoch"):
        step_decay(-1, 0.01, 0.5, 5)


class BatchRates(keras.callbacks.Callback):
    """The rate the optimizer holds at every training batch, per (absolute) epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.rates: dict[int, set[float]] = {}

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        lr = current_learning_rate(self.model.optimizer)
        self.rates.setdefault(self._epoch, set()).add(round(lr, 12))


def tiny_model() -> keras.Model:
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(2, activation="softmax")], name="tiny"
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize("factor", [0.25, 0.5])
def test_rates_inside_a_real_fit_and_after_a_resume(factor):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((16, 4), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype(np.int32)
    model = tiny_model()
    seen = BatchRates()
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=7,
        callbacks=[step_decay_callback(0.01, factor, 5), seen],
        verbose=0,
    ).history
    # Every batch of epoch e trained with the book's rate for e, and Keras logged it.
    for epoch in range(7):
        assert sorted(seen.rates[epoch]) == pytest.approx([EXPECTED[factor][epoch]], rel=1e-6)
    assert history["learning_rate"] == pytest.approx(EXPECTED[factor][:7], rel=1e-6)
    # Resume at epoch 9 (e.g. from a checkpoint): the rates continue, not restart at lr0.
    seen = BatchRates()
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=12,
        initial_epoch=9,
        callbacks=[step_decay_callback(0.01, factor, 5), seen],
        verbose=0,
    ).history
    assert sorted(seen.rates) == [9, 10, 11]
    assert history["learning_rate"] == pytest.approx(EXPECTED[factor][9:12], rel=1e-6)


def test_learning_rate_plot_is_a_png(tmp_path):
    rates = {f"F={f}": learning_rates(step_decay_schedule(0.01, f, 5), 40, 0.01) for f in EXPECTED}
    assert rates["F=0.25"][-1] == pytest.approx(0.01 * 0.25**8)  # floor(40 / 5) = 8 drops
    path = tmp_path / "lr.png"
    plot_learning_rates(path, rates, "step decay")
    image = cv2.imread(str(path))
    assert image is not None and image.shape == (500, 800, 3)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left beside it

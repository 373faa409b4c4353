"""Ch 17 TrainingMonitor: JSON + PNG after every epoch of a real fit, and a resume."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from dl4cv.training.monitor import TrainingMonitor

KEYS = {"loss", "accuracy", "val_loss", "val_accuracy"}


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((24, 5), dtype=np.float32)
    return x, (x[:, 0] + x[:, 1] > 1).astype(np.int32)


def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(2, activation="softmax")], name="tiny"
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def fit(model, monitor, epochs, initial_epoch=0, extra=()):
    x, y = data()
    return model.fit(
        x[:16],
        y[:16],
        validation_data=(x[16:], y[16:]),
        batch_size=8,
        epochs=epochs,
        initial_epoch=initial_epoch,
        callbacks=[monitor, *extra],
        verbose=0,
    ).history


class ReadFiles(keras.callbacks.Callback):
    """Runs after the monitor each epoch: what a reader watching the run would see."""

    def __init__(self, json_path: Path, fig_path: Path) -> None:
        super().__init__()
        self.json_path, self.fig_path = json_path, fig_path
        self.seen: list[tuple[int, int, tuple]] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        history = json.loads(self.json_path.read_text())
        assert set(history) >= KEYS
        image = cv2.imread(str(self.fig_path))
        assert image is not None
        self.seen.append((epoch, len(history["loss"]), image.shape))


def test_files_after_every_epoch(tmp_path):
    json_path, fig_path = tmp_path / "out" / "history.json", tmp_path / "out" / "curves.png"
    reader = ReadFiles(json_path, fig_path)
    history = fit(tiny_model(), TrainingMonitor(fig_path, json_path), 3, extra=[reader])
    assert [(e, n) for e, n, _ in reader.seen] == [(0, 1), (1, 2), (2, 3)]
    assert all(shape[2] == 3 and shape[0] > 100 for *_, shape in reader.seen)
    saved = json.loads(json_path.read_text())
    for key in KEYS:
        assert saved[key] == pytest.approx(history[key], rel=1e-12)
    assert sorted(p.name for p in json_path.parent.iterdir()) == ["curves.png", "history.json"]


class Clock:
    """A settable time source for the monitor's plot interval."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_curves_are_redrawn_at_most_once_per_interval_and_at_the_end(tmp_path):
    """Epochs end at 0, 0.5, 1.0 and 2.5 s with a 2 s interval: the PNG is drawn after the
    first and the fourth epoch; the JSON after each; the fifth epoch's is drawn at train end."""
    json_path, fig_path = tmp_path / "history.json", tmp_path / "curves.png"
    clock = Clock()
    monitor = TrainingMonitor(fig_path, json_path, plot_interval_s=2.0, clock=clock)
    drawn, lengths = [], []
    for epoch, now in enumerate([0.0, 0.5, 1.0, 2.5, 3.0]):
        clock.now = now
        monitor.on_epoch_begin(epoch)
        monitor.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_loss": 1.0})
        drawn.append(fig_path.read_bytes())
        lengths.append(len(json.loads(json_path.read_text())["loss"]))
    assert lengths == [1, 2, 3, 4, 5]
    assert drawn[0] == drawn[1] == drawn[2] != drawn[3] == drawn[4]
    monitor.on_train_end()
    assert fig_path.read_bytes() != drawn[4]  # now with the fifth epoch


def test_resume_keeps_the_first_epochs_and_continues(tmp_path):
    json_path, fig_path = tmp_path / "history.json", tmp_path / "curves.png"
    model = tiny_model()
    first = fit(model, TrainingMonitor(fig_path, json_path), 3)
    # The checkpoint was of epoch 2; epoch 3 of the first run is trained again.
    monitor = TrainingMonitor(fig_path, json_path, start_at=2)
    assert monitor.epochs == 2
    second = fit(model, monitor, 4, initial_epoch=2)
    saved = json.loads(json_path.read_text())
    for key in KEYS:
        assert len(saved[key]) == 4
        assert saved[key][:2] == pytest.approx(first[key][:2], rel=1e-12)
        assert saved[key][2:] == pytest.approx(second[key], rel=1e-12)
    assert saved["loss"][2] != first["loss"][2]  # the replaced epoch is not the old one
    assert cv2.imread(str(fig_path)) is not None


def test_a_fresh_start_replaces_old_files(tmp_path):
    json_path, fig_path = tmp_path / "history.json", tmp_path / "curves.png"
    json_path.write_text(json.dumps({"loss": [9.0] * 7}))
    monitor = TrainingMonitor(fig_path, json_path)
    fit(tiny_model(), monitor, 1)
    assert len(json.loads(json_path.read_text())["loss"]) == 1


def test_corrupt_history_at_resume_names_the_file(tmp_path):
    json_path = tmp_path / "history.json"
    json_path.write_text('{"loss": [0.9, 0.8')  # a run killed mid-write by a non-atomic writer
    with pytest.raises(ValueError, match=r"history\.json.*not valid JSON"):
        TrainingMonitor(tmp_path / "curves.png", json_path, start_at=2)
    json_path.write_text('["loss"]')
    with pytest.raises(ValueError, match=r"history\.json.*metric"):
        TrainingMonitor(tmp_path / "curves.png", json_path, start_at=2)


def test_resume_needs_enough_history(tmp_path):
    json_path = tmp_path / "history.json"
    with pytest.raises(FileNotFoundError, match="history.json"):
        TrainingMonitor(tmp_path / "curves.png", json_path, start_at=2)
    json_path.write_text(json.dumps({"loss": [0.9]}))
    with pytest.raises(ValueError, match="only 1 epochs"):
        TrainingMonitor(tmp_path / "curves.png", json_path, start_at=2)


def test_start_at_must_match_initial_epoch(tmp_path):
    json_path, fig_path = tmp_path / "history.json", tmp_path / "curves.png"
    model = tiny_model()
    fit(model, TrainingMonitor(fig_path, json_path), 3)
    with pytest.raises(ValueError, match="initial_epoch"):
        fit(model, TrainingMonitor(fig_path, json_path, start_at=2), 5, initial_epoch=3)
    assert len(json.loads(json_path.read_text())["loss"]) == 3  # untouched

"""Checkpoints and resume: a training killed after epoch k continues from k, optimizer included."""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from dl4cv.config import Experiment, parse_params
from dl4cv.training.checkpoints import BestCheckpoint
from dl4cv.training.fit import fit_keras
from dl4cv.training.inputs import Arrays
from dl4cv.training.state import BEST_FILE, STATE_FILE, TrainingState, resumable_state
from tests.conftest import blob_image, toy_params

EPOCHS = 4
KILLED_AFTER = 2
BATCH = 4
N_TRAIN = 16
STEPS_PER_EPOCH = N_TRAIN // BATCH
LR0, DECAY = 0.05, 0.05
FINGERPRINT = "f" * 64
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds")


class Killed(Exception):
    """Stands for the process dying between two epochs."""


class KillAfter(keras.callbacks.Callback):
    """Die during the first batch after `epochs` epochs ended: epoch `epochs` is checkpointed
    by then whatever the callback order, and the next epoch's partial work is lost."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.epoch == self.epochs and batch == 1:
            raise Killed(f"killed in epoch {self.epoch + 1}")


class EpochsRun(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[int] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs.append(epoch)


def tiny_experiment(epochs: int = EPOCHS, monitor: str = "val_loss") -> Experiment:
    params = parse_params(
        toy_params(
            {
                "tiny": {
                    "chapter": 12,
                    "dataset": "toy",
                    "model": {"name": "shallownet"},
                    "optimizer": {"name": "sgd", "learning_rate": LR0, "decay": DECAY},
                    "train": {
                        "batch_size": BATCH,
                        "epochs": epochs,
                        "monitor": monitor,
                        "checkpoint_interval_s": 0,  # every epoch: kills are counted in epochs
                    },
                }
            }
        )
    )
    return params.experiment("tiny")


def tiny_arrays(n_train: int = N_TRAIN, n_val: int = 8) -> Arrays:
    def part(n: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % 2
        images = np.stack(
            [blob_image(int(y), size=8, seed=offset + i, channels=1) for i, y in enumerate(labels)]
        )
        return images[..., np.newaxis].astype(np.float32) / 255.0, labels.astype(np.int64)

    x_train, y_train = part(n_train, 0)
    x_val, y_val = part(n_val, 10_000)
    return Arrays(x_train, y_train, x_val, y_val, ["a", "b"])


def iterations(model: keras.Model) -> int:
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def leftovers(directory: Path) -> list[str]:
    """Temporary files atomic_path would leave behind (`.<name>.<random><suffix>`)."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Train EPOCHS epochs, killed after KILLED_AFTER, then resumed as `dvc repro` would."""
    keras.utils.set_random_seed(1)
    exp, data = tiny_experiment(), tiny_arrays()
    directory = tmp_path_factory.mktemp("resume") / "last"
    state = resumable_state(directory, FINGERPRINT, EPOCHS)
    assert state.completed == 0
    with pytest.raises(Killed):
        fit_keras(exp, data, state, directory, [KillAfter(KILLED_AFTER)], verbose=0)
    snapshot = directory.parent / "killed"
    shutil.copytree(directory, snapshot)

    state = resumable_state(directory, FINGERPRINT, EPOCHS)
    ran = EpochsRun()
    model = fit_keras(exp, data, state, directory, [ran], verbose=0)
    return SimpleNamespace(
        exp=exp, data=data, dir=directory, killed=snapshot, state=state, model=model, ran=ran
    )


def test_kill_leaves_a_consistent_state(resumed):
    saved = json.loads((resumed.killed / STATE_FILE).read_text())
    assert saved["completed"] == KILLED_AFTER
    assert saved["epochs"] == EPOCHS
    assert saved["fingerprint"] == FINGERPRINT
    assert saved["model_file"] == f"model-{KILLED_AFTER:04d}.keras"
    assert (resumed.killed / saved["model_file"]).is_file()
    # The state names the best checkpoint it belongs to: the epoch of the lowest val_loss.
    best_epoch = 1 + saved["history"]["val_loss"].index(min(saved["history"]["val_loss"]))
    assert saved["best_file"] == f"best-{best_epoch:04d}.keras"
    assert (resumed.killed / saved["best_file"]).is_file()
    # Files the state no longer names are removed once it is written; no temp files remain.
    assert sorted(p.name for p in resumed.killed.glob("*.keras")) == sorted(
        {saved["model_file"], saved["best_file"]}
    )
    assert leftovers(resumed.killed) == []
    for key in METRICS:
        assert len(saved["history"][key]) == KILLED_AFTER, key
    assert saved["best"] == pytest.approx(min(saved["history"]["val_loss"]))
    # The saved model carries its optimizer: the steps of the finished epochs, not the lost ones.
    model = keras.models.load_model(resumed.killed / saved["model_file"])
    assert iterations(model) == STEPS_PER_EPOCH * KILLED_AFTER


def test_resumable_state_returns_the_killed_state(resumed):
    state = resumable_state(resumed.killed, FINGERPRINT, EPOCHS)
    saved = json.loads((resumed.killed / STATE_FILE).read_text())
    assert asdict(state) == saved
    assert state.completed == KILLED_AFTER
    assert not state.finished


def test_resume_continues_from_the_last_epoch(resumed):
    assert resumed.ran.epochs == list(range(KILLED_AFTER, EPOCHS))
    assert resumed.state.completed == EPOCHS
    assert resumed.state.finished
    for key in METRICS:
        assert len(resumed.state.history[key]) == EPOCHS, key
    saved = json.loads((resumed.dir / STATE_FILE).read_text())
    assert saved["completed"] == EPOCHS
    assert saved["history"] == resumed.state.history
    assert sorted(p.name for p in resumed.dir.glob("model-*")) == [f"model-{EPOCHS:04d}.keras"]
    assert sorted(p.name for p in resumed.dir.glob("best-*")) == [saved["best_file"]]
    assert leftovers(resumed.dir) == []
    # The first epochs' history is the one saved before the kill, not retrained.
    killed = json.loads((resumed.killed / STATE_FILE).read_text())
    for key in ("loss", "val_loss", "lr"):
        assert resumed.state.history[key][:KILLED_AFTER] == killed["history"][key]


def test_resume_restores_the_optimizer_state(resumed):
    # A restarted optimizer would count only the resumed epochs' steps.
    assert iterations(resumed.model) == STEPS_PER_EPOCH * EPOCHS
    lrs = resumed.state.history["lr"]
    expected = [LR0 / (1 + DECAY * STEPS_PER_EPOCH * (e + 1)) for e in range(EPOCHS)]
    assert lrs == pytest.approx(expected, rel=1e-6)


def test_best_checkpoint_is_the_best_epoch_across_the_resume(resumed):
    val_loss = resumed.state.history["val_loss"]
    assert resumed.state.best == pytest.approx(min(val_loss))
    best = keras.models.load_model(resumed.dir / resumed.state.best_file)
    loss = best.evaluate(resumed.data.x_val, resumed.data.y_val, verbose=0, return_dict=True)
    assert loss["loss"] == pytest.approx(resumed.state.best, rel=1e-4)


def test_resume_starts_from_the_saved_best(resumed, tmp_path):
    """The best value in state.json seeds BestCheckpoint: an unbeatable best keeps the file."""
    directory = tmp_path / "last"
    shutil.copytree(resumed.killed, directory)
    saved = json.loads((directory / STATE_FILE).read_text())
    saved["best"] = 0.0  # no val_loss can go below 0
    (directory / STATE_FILE).write_text(json.dumps(saved))
    before = (directory / saved["best_file"]).read_bytes()

    state = resumable_state(directory, FINGERPRINT, EPOCHS)
    fit_keras(resumed.exp, resumed.data, state, directory, verbose=0)
    assert state.completed == EPOCHS
    assert state.best == 0.0
    assert state.best_file == saved["best_file"]
    assert (directory / saved["best_file"]).read_bytes() == before


# resumable_state: which saved states are not to be resumed.


def write_state(directory: Path, **changes) -> TrainingState:
    directory.mkdir(parents=True, exist_ok=True)
    state = TrainingState(FINGERPRINT, EPOCHS, completed=2, history={"loss": [1.0, 0.5]})
    state.model_file = "model-0002.keras"
    state.run_id = "abc"
    for key, value in changes.items():
        setattr(state, key, value)
    (directory / "model-0002.keras").write_bytes(b"model")
    state.save(directory)
    return state


def assert_fresh(state: TrainingState, fingerprint: str = FINGERPRINT) -> None:
    assert state == TrainingState(fingerprint, EPOCHS)
    assert state.completed == 0
    assert state.history == {}
    assert state.run_id is None
    assert state.best is None


def test_resumable_state_without_a_state(tmp_path):
    assert_fresh(resumable_state(tmp_path / "nothing", FINGERPRINT, EPOCHS))


def test_resumable_state_resumes_a_matching_unfinished_state(tmp_path):
    written = write_state(tmp_path)
    state = resumable_state(tmp_path, FINGERPRINT, EPOCHS)
    assert state == written
    assert state.run_id == "abc"


def test_resumable_state_ignores_other_params(tmp_path):
    write_state(tmp_path)
    assert_fresh(resumable_state(tmp_path, "0" * 64, EPOCHS), "0" * 64)


def test_resumable_state_ignores_a_finished_training(tmp_path):
    write_state(tmp_path, completed=EPOCHS)
    assert_fresh(resumable_state(tmp_path, FINGERPRINT, EPOCHS))


def test_resumable_state_ignores_a_missing_model_file(tmp_path):
    write_state(tmp_path)
    (tmp_path / "model-0002.keras").unlink()
    assert_fresh(resumable_state(tmp_path, FINGERPRINT, EPOCHS))


@pytest.mark.parametrize(
    "content",
    [
        b'{"fingerprint": "ff", "epochs": ',  # truncated
        b"",
        b"not json at all",
        b'{"fingerprint": "x", "bogus": 1}',  # not a TrainingState
        b"[1, 2]",
        b"\xff\xfe\x00\x81 binary garbage",  # not even UTF-8
    ],
)
def test_resumable_state_ignores_an_unreadable_state(tmp_path, content, caplog):
    (tmp_path / STATE_FILE).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="dl4cv.training.state"):
        assert_fresh(resumable_state(tmp_path, FINGERPRINT, EPOCHS))
    assert "unreadable" in caplog.text


# BestCheckpoint on its own: min for losses, max for accuracies, NaN never improves.


@pytest.fixture(scope="module")
def small_model() -> keras.Model:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def saves(checkpoint: BestCheckpoint, model: keras.Model, values: list[float]) -> list[bool]:
    """Which epochs wrote the checkpoint file."""
    checkpoint.set_model(model)
    written = []
    for epoch, value in enumerate(values):
        checkpoint.on_epoch_end(epoch, {checkpoint.monitor: value, "other": 1.0})
        path = Path(checkpoint.path)
        written.append(path.exists())
        if path.exists():
            assert checkpoint.saved == path
            keras.models.load_model(path)  # a complete, loadable model
            path.unlink()
    return written


def test_best_checkpoint_minimizes_losses(tmp_path, small_model):
    best = BestCheckpoint(tmp_path / BEST_FILE, "val_loss")
    assert saves(best, small_model, [1.0, 0.8, 0.9, 0.8, 0.5]) == [True, True, False, False, True]
    assert best.best == 0.5
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("monitor", ["val_accuracy", "accuracy"])
def test_best_checkpoint_maximizes_accuracies(tmp_path, small_model, monitor):
    best = BestCheckpoint(tmp_path / BEST_FILE, monitor)
    assert saves(best, small_model, [0.5, 0.4, 0.7, 0.7, 0.9]) == [True, False, True, False, True]
    assert best.best == 0.9


def test_best_checkpoint_minimizes_training_loss(tmp_path, small_model):
    best = BestCheckpoint(tmp_path / BEST_FILE, "loss")
    assert saves(best, small_model, [2.0, 3.0, 1.0]) == [True, False, True]


def test_best_checkpoint_keeps_an_initial_best(tmp_path, small_model):
    best = BestCheckpoint(tmp_path / BEST_FILE, "val_loss", best=0.5)
    assert saves(best, small_model, [0.6, 0.5, 0.4]) == [False, False, True]
    assert best.best == 0.4


def test_best_checkpoint_ignores_nan(tmp_path, small_model):
    best = BestCheckpoint(tmp_path / BEST_FILE, "val_loss")
    assert saves(best, small_model, [math.nan, 1.0, math.nan, 0.9]) == [False, True, False, True]
    assert best.best == 0.9
    up = BestCheckpoint(tmp_path / BEST_FILE, "val_accuracy", best=0.5)
    assert saves(up, small_model, [math.nan]) == [False]
    assert up.best == 0.5


def test_best_checkpoint_warns_once_when_the_monitor_is_missing(tmp_path, small_model, caplog):
    best = BestCheckpoint(tmp_path / BEST_FILE, "val_loss")
    best.set_model(small_model)
    with caplog.at_level(logging.WARNING, logger="dl4cv.training.checkpoints"):
        for epoch in range(3):
            best.on_epoch_end(epoch, {"loss": 0.1})
    assert not Path(best.path).exists() and best.saved is None
    assert best.best is None
    assert len([r for r in caplog.records if "val_loss" in r.getMessage()]) == 1


def test_best_checkpoint_fills_a_filename_template(tmp_path, small_model):
    """One file per improvement, named by epoch and monitored value (the book's ch 18)."""
    best = BestCheckpoint(tmp_path / "weights-{epoch:03d}-{val_loss:.4f}.keras", "val_loss")
    best.set_model(small_model)
    for epoch, value in enumerate([0.9, 0.7, 0.8, 0.55]):
        best.on_epoch_end(epoch, {"val_loss": value})
    names = sorted(p.name for p in tmp_path.glob("*.keras"))
    assert names == [
        "weights-001-0.9000.keras",
        "weights-002-0.7000.keras",
        "weights-004-0.5500.keras",
    ]
    assert best.saved == tmp_path / "weights-004-0.5500.keras"


def test_resumable_state_forgets_a_missing_best_checkpoint(tmp_path):
    write_state(tmp_path, best=0.3, best_file="best-0001.keras")
    state = resumable_state(tmp_path, FINGERPRINT, EPOCHS)
    assert state.completed == 2
    assert state.best is None and state.best_file is None

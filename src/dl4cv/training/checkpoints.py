"""Checkpoints and resume.

`BestCheckpoint` keeps the model with the best monitored value (the book's ch 18).
`ResumeCheckpoint` saves, after every epoch, the full model (weights and optimizer state) and a
small `state.json`: a killed training restarted by `dvc repro` continues from the last finished
epoch and ends with the same number of epochs. Every file is written to a temporary name and
renamed, and the state names its model file only once that file is complete.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras

from dl4cv.fileio import atomic_path, write_json
from dl4cv.training.optimizers import current_learning_rate

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
BEST_FILE = "best.keras"


@dataclass
class TrainingState:
    fingerprint: str  # what was trained: a state for other params is never resumed
    epochs: int
    completed: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    run_id: str | None = None
    best: float | None = None
    model_file: str | None = None

    @property
    def finished(self) -> bool:
        return self.completed >= self.epochs

    def save(self, directory: Path) -> None:
        write_json(directory / STATE_FILE, asdict(self))

    @classmethod
    def load(cls, directory: Path) -> TrainingState | None:
        path = directory / STATE_FILE
        if not path.exists():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            log.warning("%s: unreadable (%s); starting afresh", path, exc)
            return None


def resumable_state(directory: Path, fingerprint: str, epochs: int) -> TrainingState:
    """The state to continue from: an unfinished one for the same fingerprint, else a new one."""
    state = TrainingState.load(directory)
    if state is None:
        return TrainingState(fingerprint, epochs)
    if state.fingerprint != fingerprint:
        log.info("%s: saved state is for other params; starting afresh", directory)
        return TrainingState(fingerprint, epochs)
    if state.finished:
        log.info("%s: saved state is a finished training; starting afresh", directory)
        return TrainingState(fingerprint, epochs)
    if state.completed and not (directory / str(state.model_file)).exists():
        log.warning("%s: state names a missing model file; starting afresh", directory)
        return TrainingState(fingerprint, epochs)
    if state.completed:
        log.info("resuming from epoch %d of %d", state.completed, epochs)
    return state


class EpochStats(keras.callbacks.Callback):
    """Add the learning rate and the epoch's wall time to the logs other callbacks see."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["lr"] = current_learning_rate(self.model.optimizer)
            logs["epoch_seconds"] = time.perf_counter() - self._start


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model whenever the monitored value improves (min for losses, max otherwise)."""

    def __init__(self, path: Path, monitor: str = "val_loss", best: float | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.monitor = monitor
        self.maximize = "loss" not in monitor
        self.best = best
        self._warned = False

    def improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        return value > self.best if self.maximize else value < self.best

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            if not self._warned:
                log.warning(
                    "BestCheckpoint: %r is not among the logged metrics %s",
                    self.monitor,
                    sorted(logs or {}),
                )
                self._warned = True
            return
        if self.improved(float(value)):
            self.best = float(value)
            with atomic_path(self.path, suffix=".keras") as tmp:
                self.model.save(tmp)


class ResumeCheckpoint(keras.callbacks.Callback):
    """After every epoch, save the full model and the training state into `directory`."""

    def __init__(
        self, directory: Path, state: TrainingState, best: BestCheckpoint | None = None
    ) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.state = state
        self.best = best

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for key, value in (logs or {}).items():
            self.state.history.setdefault(key, []).append(float(value))
        previous = self.state.model_file
        self.state.model_file = f"model-{epoch + 1:04d}.keras"
        with atomic_path(self.directory / self.state.model_file, suffix=".keras") as tmp:
            self.model.save(tmp)
        self.state.completed = epoch + 1
        if self.best is not None:
            self.state.best = self.best.best
        self.state.save(self.directory)
        if previous and previous != self.state.model_file:
            (self.directory / previous).unlink(missing_ok=True)

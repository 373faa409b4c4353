"""Checkpoints and resume.

`BestCheckpoint` keeps the model with the best monitored value (the book's ch 18).
`ResumeCheckpoint` saves, after every epoch, the full model (weights and optimizer state) and a
small `state.json`: a killed training restarted by `dvc repro` continues from the last finished
epoch and ends with the same number of epochs. Every file is written to a temporary name and
renamed, and the state names its model file only once that file is complete.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import keras

from dl4cv.fileio import atomic_path
from dl4cv.training.state import TrainingState

log = logging.getLogger(__name__)


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

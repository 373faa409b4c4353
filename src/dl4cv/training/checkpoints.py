"""Checkpoints and resume.

`BestCheckpoint` keeps the model with the best monitored value (the book's ch 18).
`ResumeCheckpoint` saves, after every epoch (or at most every `checkpoint_interval_s`), the full
model (weights and optimizer state) and a small `state.json`: a killed training restarted by
`dvc repro` continues from the last saved epoch and ends with the same number of epochs. Every
file is written to a temporary name and renamed, and the state names its model file only once
that file is complete.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import keras

from dl4cv.runtime.fileio import atomic_path
from dl4cv.training.state import TrainingState, keep_spare

log = logging.getLogger(__name__)


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model whenever the monitored value improves (min for losses, max otherwise).

    `path` may be a template filled with the epoch number and the epoch's logs, e.g.
    `weights-{epoch:03d}-{val_loss:.4f}.keras` (one file per improvement, the book's ch 18);
    a plain path keeps one file, overwritten on each improvement. `saved` is the last file.
    `weights_only` saves the weights alone (`*.weights.h5`, a third of a full model with its
    optimizer state): enough to reload a model built by the same code.
    """

    def __init__(
        self,
        path: Path | str,
        monitor: str = "val_loss",
        best: float | None = None,
        saved: Path | None = None,
        weights_only: bool = False,
    ) -> None:
        super().__init__()
        self.path = str(path)
        suffix = ".weights.h5" if weights_only else ".keras"
        if not self.path.endswith(suffix):
            raise ValueError(f"BestCheckpoint: {self.path!r} must end with {suffix!r}")
        self.monitor = monitor
        self.maximize = "loss" not in monitor
        self.best = best
        self.saved = saved
        self.weights_only = weights_only
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
            self.saved = Path(self.path.format(epoch=epoch + 1, **(logs or {})))
            if self.weights_only:
                with atomic_path(self.saved, suffix=".weights.h5") as tmp:
                    self.model.save_weights(tmp)
            else:
                with atomic_path(self.saved, suffix=".keras") as tmp:
                    self.model.save(tmp)


class ResumeCheckpoint(keras.callbacks.Callback):
    """After every epoch, save the full model and the training state into `directory`.

    The state names the model and best-checkpoint files it belongs to, and is written after
    them: a kill at any moment leaves a state whose files are complete. Files the state no
    longer names are removed only after it is written.

    With `min_interval_s` > 0 it saves at most once per that many seconds (timed from the start
    of training and from the last save) and always after the last epoch, or at the end of a
    training stopped early: a kill loses at most that much training. `clock` is the time
    source (seconds, monotonic). `spare`: a folder kept as a copy of `directory` (see
    dl4cv.runtime.paths.spare_resume_dir).
    """

    def __init__(
        self,
        directory: Path,
        state: TrainingState,
        best: BestCheckpoint | None = None,
        min_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        spare: Path | None = None,
    ) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.spare = spare
        self.state = state
        self.best = best
        self.min_interval_s = min_interval_s
        self.clock = clock
        self._last_save = clock()
        self._unsaved: int | None = None  # the last finished epoch not saved yet

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._last_save = self.clock()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for key, value in (logs or {}).items():
            self.state.history.setdefault(key, []).append(float(value))
        self._unsaved = epoch
        last = epoch + 1 >= self.state.epochs
        if last or self.clock() - self._last_save >= self.min_interval_s:
            self.save(epoch)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._unsaved is not None:  # stopped early (stop_training) between two saves
            self.save(self._unsaved)

    def save(self, epoch: int) -> None:
        """Save the model as it stands after `epoch` (0-based) and the state naming it."""
        model_file = f"model-{epoch + 1:04d}.keras"
        with atomic_path(self.directory / model_file, suffix=".keras") as tmp:
            self.model.save(tmp)
        self.state.model_file = model_file
        self.state.completed = epoch + 1
        if self.best is not None:
            self.state.best = self.best.best
            self.state.best_file = self.best.saved.name if self.best.saved else None
        self.state.save(self.directory)
        remove_stale_files(self.directory, self.state)
        if self.spare is not None:
            keep_spare(self.directory, self.state, self.spare)
        self._unsaved = None
        self._last_save = self.clock()


def remove_stale_files(directory: Path, state: TrainingState) -> None:
    """Delete checkpoint files of `directory` that `state` does not name."""
    keep = {state.model_file, state.best_file}
    for path in directory.glob("*.keras"):
        if path.name not in keep:
            path.unlink(missing_ok=True)


IMPROVEMENT_TEMPLATE = "weights-{epoch:03d}-{%s:.4f}.weights.h5"


def improvement_epoch(path: Path) -> int | None:
    """The epoch number in a `weights-<epoch>-<value>.weights.h5` name, None for other files."""
    parts = path.name.split("-")
    if len(parts) < 3 or parts[0] != "weights" or not parts[1].isdigit():
        return None
    return int(parts[1])


def prune_improvements(directory: Path, completed: int) -> None:
    """Drop per-improvement files of epochs after `completed`: a resumed training trains those
    epochs again (and saves its own files for them); a fresh one (0) starts an empty folder."""
    if not directory.is_dir():
        return
    for path in directory.glob("weights-*.weights.h5"):
        epoch = improvement_epoch(path)
        if epoch is None or epoch > completed:
            path.unlink(missing_ok=True)

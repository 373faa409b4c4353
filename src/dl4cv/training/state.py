"""The saved state of a training, and the rule for when it may be resumed.

Kept free of Keras so stages that only look at a state (or train k-NN) stay light.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dl4cv.runtime.fileio import write_json

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
BEST_FILE = "best.keras"  # the best checkpoint's name in models/<exp>/model/


@dataclass
class TrainingState:
    fingerprint: str  # what was trained: a state for other params is never resumed
    epochs: int
    completed: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    run_id: str | None = None  # the MLflow run (states saved before the journal)
    record: str | None = None  # the journal record of the run (dl4cv.tracking)
    best: float | None = None
    model_file: str | None = None
    best_file: str | None = None

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
        except (ValueError, TypeError) as exc:  # bad JSON or UTF-8, or not a state's keys
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
    if state.best_file and not (directory / state.best_file).exists():
        log.warning(
            "%s: best checkpoint %s is missing; tracking the best anew", directory, state.best_file
        )
        state.best, state.best_file = None, None
    if state.completed:
        log.info("resuming from epoch %d of %d", state.completed, epochs)
    return state


def keep_spare(directory: Path, state: TrainingState, spare: Path) -> None:
    """Make `spare` hold what `directory` holds of `state` (its files, then state.json).
    Hard links: each file is written once, atomically, and never changed."""
    spare.mkdir(parents=True, exist_ok=True)
    names = {state.model_file, state.best_file} - {None}
    for name in sorted(names):
        if not (spare / name).exists():
            _link(directory / name, spare / name)
    _link(directory / STATE_FILE, spare / STATE_FILE)
    for path in spare.glob("*.keras"):
        if path.name not in names:
            path.unlink(missing_ok=True)


def take_spare(spare: Path, directory: Path, fingerprint: str, epochs: int) -> bool:
    """Put the spare of an unfinished training of `fingerprint` into `directory`, if there is
    one with an epoch done (a queue worker killed in DVC's temporary copy). True if it did."""
    state = TrainingState.load(spare)
    usable = (
        state is not None
        and state.fingerprint == fingerprint
        and 0 < state.completed < epochs
        and (spare / str(state.model_file)).exists()
    )
    if not usable:
        return False
    directory.mkdir(parents=True, exist_ok=True)
    for path in spare.iterdir():
        _link(path, directory / path.name)
    log.info("%s: the resume state left in %s (epoch %d) taken", directory, spare, state.completed)
    return True


def _link(source: Path, target: Path) -> None:
    """`target` becomes `source`'s content, at once (a hard link, else a copy, renamed)."""
    tmp = target.with_name(f".{target.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # another file system, or no hard links there
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)

"""The saved state of a training, and the rule for when it may be resumed.

Kept free of Keras so stages that only look at a state (or train k-NN) stay light.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dl4cv.fileio import write_json

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

"""MLflow tracking: what stages log about a run, kept in a journal and sent to the store.

One run per experiment each time it trains, named by the experiment id; evaluation logs into
the same run. A stage logs through the functions here; nothing it does waits on the store
(dl4cv.tracking.journal, dl4cv.tracking.sender). Where the store could not take the record
within the stage, one WARNING line says so and `python -m dl4cv.tracking sync` sends it later.
"""

from __future__ import annotations

import dataclasses
import getpass
import logging
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dl4cv.runtime.paths import repo_root
from dl4cv.tracking.journal import JOURNAL_DIR, Entry, entries, now_ms
from dl4cv.tracking.store import ARTIFACTS_DIR, EXPERIMENT_NAME, tracking_uri

__all__ = [
    "ARTIFACTS_DIR",
    "EXPERIMENT_NAME",
    "Run",
    "fail_running",
    "flatten",
    "git_commit",
    "log_artifact",
    "log_input",
    "log_metric_history",
    "log_metrics",
    "log_model",
    "log_params",
    "log_text",
    "pending",
    "prepare",
    "register_model",
    "repo_root",
    "run",
    "set_tags",
    "tracking_uri",
]

log = logging.getLogger(__name__)

SYNC_COMMAND = "python -m dl4cv.tracking sync"


class Run:
    """The run a stage logs into: its journal entry, and the sender that forwards it."""

    def __init__(self, entry: Entry, name: str, record: str) -> None:
        from dl4cv.tracking.sender import LiveSender

        self.entry = entry
        self.name = name
        self.record = record  # the key of the entry that made the run: what resumes find
        self.sender = LiveSender(entry)

    @property
    def run_id(self) -> str | None:
        """The MLflow run id; None where the store could not be reached (the run is made when
        the journal is sent)."""
        return self.sender.run_id()

    def append(self, op: dict[str, Any]) -> int:
        index = self.entry.append(op)
        self.sender.notify()
        return index


_active: list[Run] = []


def _current() -> Run:
    if not _active:
        raise RuntimeError("no tracking.run() is open")
    return _active[-1]


@contextmanager
def run(name: str, run_id: str | None = None, record: str | None = None) -> Iterator[Run]:
    """Open the run of experiment `name`, or reopen one to add to it (evaluate, a resumed
    training): `run_id` if the store has it, else the run made for `record`. A run the store
    no longer has is replaced by a new one. The run ends FINISHED, or FAILED if the block
    raises; its record is then sent, or kept in the journal (one WARNING line)."""
    entry = Entry.create()
    record = record or entry.key
    entry.append(
        {
            "op": "start",
            "name": name,
            "record": record,
            "run_id": run_id,
            "time": now_ms(),
            "tags": {
                "mlflow.runName": name,
                "mlflow.user": getpass.getuser(),
                "mlflow.source.name": sys.argv[0] or "python",
                "mlflow.source.type": "LOCAL",
            },
        }
    )
    active = Run(entry, name, record)
    _active.append(active)
    status = "FAILED"
    try:
        yield active
        status = "FINISHED"
    finally:
        _active.remove(active)
        entry.append({"op": "end", "status": status, "time": now_ms()})
        _finish(active)


def _finish(active: Run) -> None:
    failure = active.sender.close()
    if failure is None:
        active.entry.remove()
        return
    active.entry.release()
    log.warning(
        "MLflow run of %s not sent to %s (%s); kept in %s/%s, send it with: %s",
        active.name,
        tracking_uri(),
        failure,
        JOURNAL_DIR,
        active.entry.key,
        SYNC_COMMAND,
    )


def prepare() -> None:
    """Create the store and the experiment now (before queue workers start, so that a store
    that cannot be opened is reported once, not by every experiment)."""
    from dl4cv.tracking import store

    store.connect()


def fail_running(tag: str, value: str) -> int:
    """Mark FAILED every RUNNING run tagged `tag` = `value`: what a killed attempt left (its
    process is gone; nothing will end it). Returns how many."""
    from dl4cv.tracking import store

    mlflow = store.connect()
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{tag}` = '{value}' and attributes.status = 'RUNNING'",
    )
    for found in runs:
        client.set_terminated(found.info.run_id, "FAILED")
        log.warning(
            "MLflow run %s of a killed attempt (%s) marked FAILED", found.info.run_id, value
        )
    return len(runs)


def pending() -> list[Entry]:
    """Entries no running stage writes that still hold something to send."""
    waiting = []
    for entry in entries():
        if entry.acquire():
            entry.release()
            if entry.pending() or not entry.closed():
                waiting.append(entry)
    return waiting


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    return {prefix: value}


def log_params(params: dict[str, Any]) -> None:
    """Params the run lacks (a reopened run keeps its own)."""
    values = {k: "null" if v is None else str(v) for k, v in params.items()}
    _current().append({"op": "params", "params": values})


def set_tags(tags: dict[str, str], missing_only: bool = False) -> None:
    """`missing_only`: on a reopened run, only the tags it lacks."""
    op: dict[str, Any] = {"op": "tags", "tags": {k: str(v) for k, v in tags.items()}}
    if missing_only:
        op["missing_only"] = True
    _current().append(op)


def log_metrics(metrics: dict[str, float], step: int | None = None, if_new: bool = False) -> None:
    """`if_new`: only if this stage made the run (not on a resumed one)."""
    time = now_ms()
    points = [[k, float(v), time, step or 0] for k, v in metrics.items()]
    op: dict[str, Any] = {"op": "metrics", "metrics": points}
    if if_new:
        op["if_new"] = True
    _current().append(op)


def log_metric_history(history: dict[str, Sequence[float]], steps: Sequence[int]) -> None:
    """Log `history[name][step - 1]` at each 1-based step, in one operation."""
    time = now_ms()
    points = [
        [name, float(values[step - 1]), time, step]
        for name, values in history.items()
        for step in steps
    ]
    _current().append({"op": "metrics", "metrics": points})


def log_artifact(path: Path, folder: str | None = None, if_new: bool = False) -> None:
    """A copy of `path` (if it exists) as an artifact, under `folder`."""
    if not path.exists():
        return
    active = _current()
    op: dict[str, Any] = {"op": "artifact", "file": active.entry.keep(path), "folder": folder}
    if if_new:
        op["if_new"] = True
    active.append(op)


def log_text(text: str, artifact_file: str) -> None:
    active = _current()
    name = Path(artifact_file)
    target = active.entry.file(active.entry.next_index(), name.name)
    target.write_text(text)
    folder = str(name.parent) if str(name.parent) != "." else None
    file = str(target.relative_to(active.entry.path))
    active.append({"op": "artifact", "file": file, "folder": folder})


def log_input(op: dict[str, Any]) -> None:
    """A dataset input (dl4cv.tracking.datasets.input_op), logged on a new run only."""
    _current().append(op)


def log_model(name: str, flavor: str, save: Callable[[Path], None]) -> None:
    """The run's MLflow Model `name`: `save(folder)` writes it (a flavor's save_model) into
    the journal; it is logged (runs:/<run id>/<name>) when sent."""
    active = _current()
    folder = active.entry.path / f"model-{active.entry.next_index()}"
    folder.mkdir()
    try:
        save(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    active.append({"op": "model", "name": name, "flavor": flavor, "dir": folder.name})


def register_model(name: str, model: str) -> None:
    """Put the run's MLflow Model `model` in the Model Registry as `name` when sent."""
    _current().append({"op": "register", "name": name, "model": model})


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"

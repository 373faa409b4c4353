"""The journal: every MLflow record a stage makes is written here first, then sent.

A stage never waits on the tracking store: what it logs (params, tags, each epoch's metrics
with its time, files, the MLflow Model) is appended to an entry under `mlflow-journal/` in the
repository, and a sender (dl4cv.tracking.sender) forwards it. An entry is deleted once all of
it reached the store; one the store could not take stays until `python -m dl4cv.tracking
sync` sends it.

An entry is a folder: `ops.jsonl` (one operation per line, in order), `sent.json` (how many
were sent, and the MLflow run they went to), the files it logged, and `lock`, held by the
process that writes the entry: a killed stage's entry is free to send, a running one's is not.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from dl4cv.runtime.fileio import write_json
from dl4cv.runtime.paths import repo_root

JOURNAL_DIR = "mlflow-journal"
OPS_FILE = "ops.jsonl"
SENT_FILE = "sent.json"
LOCK_FILE = "lock"


def journal_dir() -> Path:
    return repo_root() / JOURNAL_DIR


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Progress:
    """What of an entry reached the store."""

    ops: int = 0  # the first `ops` operations were sent
    run_id: str | None = None  # the MLflow run they went to
    created: bool = False  # whether this entry made that run (not a reopened one)


class Entry:
    """One stage's record of one MLflow run, on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.key = path.name
        self._lock = threading.Lock()
        self._handle: IO[str] | None = None
        self._count: int | None = None  # operations written, once counted

    @classmethod
    def create(cls) -> Entry:
        """A new entry, locked by this process until `release()`."""
        key = f"{time.strftime('%Y%m%dT%H%M%S')}{now_ms() % 1000:03d}-{uuid.uuid4().hex[:12]}"
        path = journal_dir() / key
        path.mkdir(parents=True)
        entry = cls(path)
        if not entry.acquire():  # a new folder nobody else knows of
            raise RuntimeError(f"{path}: locked at creation")
        return entry

    def acquire(self) -> bool:
        """Take the entry's lock without waiting; False while another process holds it."""
        handle = (self.path / LOCK_FILE).open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._handle = handle
        return True

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def append(self, op: dict[str, Any]) -> int:
        """Write `op` as the entry's next operation; returns its index."""
        with self._lock:
            index = self.next_index()
            with (self.path / OPS_FILE).open("a") as out:
                out.write(json.dumps(op, sort_keys=True) + "\n")
                out.flush()
                os.fsync(out.fileno())
            self._count = index + 1
            return index

    def next_index(self) -> int:
        """The index the next operation will have."""
        if self._count is None:
            self._count = len(self.ops())
        return self._count

    def ops(self) -> list[dict[str, Any]]:
        """The operations written so far (a last line cut short by a kill is not one)."""
        path = self.path / OPS_FILE
        if not path.exists():
            return []
        lines = path.read_text().split("\n")
        return [json.loads(line) for line in lines[:-1] if line]

    def file(self, index: int, name: str) -> Path:
        """Where operation `index` keeps its copy of a file named `name`."""
        folder = self.path / "files" / str(index)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def keep(self, source: Path) -> str:
        """Copy `source` into the entry (a stage may rewrite or delete it before it is sent);
        returns its path relative to the entry."""
        target = self.file(self.next_index(), source.name)
        shutil.copyfile(source, target)
        return str(target.relative_to(self.path))

    @property
    def progress(self) -> Progress:
        path = self.path / SENT_FILE
        return Progress(**json.loads(path.read_text())) if path.exists() else Progress()

    @progress.setter
    def progress(self, value: Progress) -> None:
        write_json(self.path / SENT_FILE, asdict(value))

    def start(self) -> dict[str, Any]:
        """The entry's first operation: which run it records (see tracking.open_run)."""
        return self.ops()[0]

    def pending(self) -> int:
        """Operations not sent yet."""
        return len(self.ops()) - self.progress.ops

    def closed(self) -> bool:
        """Whether the stage finished writing it (ended well or not), rather than was killed."""
        ops = self.ops()
        return bool(ops) and ops[-1]["op"] == "end"

    def describe(self) -> str:
        """One line: whose record, when, how it ended, what is left to send, where."""
        start = self.start()
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start["time"] / 1000))
        state = "ended" if self.closed() else "killed"
        return (
            f"{start['name']} ({when}, {state}, {self.pending()} to send) {JOURNAL_DIR}/{self.key}"
        )

    def remove(self) -> None:
        self.release()
        shutil.rmtree(self.path, ignore_errors=True)


def entries() -> Iterator[Entry]:
    """Every entry of the journal, oldest first."""
    folder = journal_dir()
    if folder.is_dir():
        for path in sorted(p for p in folder.iterdir() if (p / OPS_FILE).exists()):
            yield Entry(path)

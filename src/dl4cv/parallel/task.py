"""One Dask task: one `dvc repro --single-item` of one or more stages, each stage's output in
its own log file, its start and end announced as they happen.

DVC decides whether each stage is up to date, takes its locks and writes dvc.lock; this only
starts it, reads what it prints, and stops it when the run is interrupted. `--wait-for-lock`:
DVC holds the repository lock briefly before and after each stage's command, and a command
started in that moment would fail with "Unable to acquire lock" instead of waiting its turn.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

LOG_DIR = Path("logs") / "repro"  # each stage's output, relative to the repository
TOPIC = "dl4cv-stage"  # the Dask event topic of stage starts and ends (the caller prints them)
READ_SECONDS = 0.25  # how long a read of DVC's output waits before looking at the stop event
STOP_CHECK_SECONDS = 1.0  # how often a running task looks whether the run was interrupted
STOP_GRACE_SECONDS = 30.0  # after Ctrl-C, a stage has this long to stop before SIGKILL
# What `dvc repro` prints as it takes each stage (dvc/stage/run.py, dvc/stage/__init__.py).
MARKERS = (
    (re.compile(r"^Running stage '(.+)':$"), "ran"),
    (re.compile(r"^Stage '(.+)' didn't change, skipping$"), "up to date"),
    (re.compile(r"^Stage '(.+)' is cached - skipping run, checking out outputs$"), "restored"),
)


class StageFailed(Exception):
    """A stage ended with an error: (stage, a message naming it and its log)."""

    def __str__(self) -> str:
        return self.args[1]


class StageStopped(Exception):
    """The run was interrupted: (the stages that were running then)."""


def dvc_command(stages: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", *stages]


def log_file(root: Path, stage: str) -> Path:
    return Path(root) / LOG_DIR / f"{stage.replace('/', '_')}.log"


@dataclass
class StageLogs:
    """DVC's output, line by line, into the log of the stage it is about; each stage's start
    and end as events."""

    root: Path
    stages: Sequence[str]
    announce: Callable[[dict], None]  # an event of TOPIC
    gpu: str = ""  # the CUDA_VISIBLE_DEVICES the stages run with
    done: dict[str, tuple[float, str]] = field(default_factory=dict)  # stage -> seconds, verdict
    current: str | None = None
    started: float = 0.0
    verdict: str = "ran"
    log: BinaryIO | None = None
    pending: bytes = b""

    def feed(self, data: bytes) -> None:
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            self._line(line + b"\n")

    def _line(self, line: bytes) -> None:
        text = line.decode(errors="replace").strip()
        for pattern, verdict in MARKERS:
            found = pattern.match(text)
            if found and found[1] in self.stages and found[1] != self.current:
                self.finish()
                self._begin(found[1], verdict)
                break
        if self.current is None:  # DVC's first words, before it names a stage
            self._begin(self.stages[0], "ran")
        self.log.write(line)
        self.log.flush()

    def _begin(self, stage: str, verdict: str) -> None:
        self.current, self.verdict, self.started = stage, verdict, time.monotonic()
        path = log_file(self.root, stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.log = path.open("wb")
        if verdict == "ran":
            self.announce({"stage": stage, "start": self.gpu})

    def finish(self) -> None:
        """The current stage has ended well (DVC went on to the next, or exited 0)."""
        if self.current is None:
            return
        seconds = time.monotonic() - self.started
        took = f" {seconds:.1f} s" if self.verdict == "ran" else ""
        self.announce(
            {"stage": self.current, "end": f"done  {self.current}{took} ({self.verdict})"}
        )
        self.done[self.current] = (seconds, self.verdict)
        self._close()

    def flush(self) -> None:
        """What DVC wrote after its last newline."""
        if self.pending:
            self.feed(b"\n")

    def fail(self, code: int) -> StageFailed:
        """DVC exited with `code` during the current stage: it failed."""
        self.flush()
        stage = self.current or self.stages[0]
        if self.current is None:
            self._begin(stage, "ran")
        self._close()
        path = log_file(self.root, stage)
        shown = path.relative_to(self.root) if path.is_relative_to(self.root) else path
        why = _reason(path.read_text(errors="replace"))
        error = StageFailed(stage, f"{stage} failed (exit {code}): {why}; log: {shown}")
        self.announce({"stage": stage, "end": f"FAILED {error}"})
        return error

    def stop(self) -> tuple[str, ...]:
        """The run was interrupted: the stage running then (if any) is announced stopped."""
        self.flush()
        running = (self.current,) if self.current else ()
        for stage in running:
            self.announce({"stage": stage, "end": f"stopped {stage}"})
        self._close()
        return running

    def _close(self) -> None:
        if self.log is not None:
            self.log.close()
        self.log, self.current = None, None


def run_stages(
    root: str, stages: Sequence[str], stop: str, devices: Sequence[str], *_needs: object
) -> dict[str, tuple[float, str]]:
    """Run `stages` (in this order) of the repository at `root`, a path this worker sees; stop
    when the Dask event `stop` is set. `devices`: the GPUs of a local cluster's workers, worker
    n gets devices[n % len] (empty: the worker's own environment). `_needs` are the results of
    the tasks it needs: Dask starts it after them. Returns each stage's seconds and verdict."""
    from distributed import Event, get_worker

    worker = get_worker()
    stopped = Event(stop)
    if stopped.is_set():
        raise StageStopped(())
    if not (Path(root) / "dvc.yaml").is_file():
        message = f"{stages[0]}: no dvc.yaml in {root} on the worker at {worker.address}"
        raise StageFailed(stages[0], message)
    env = dict(os.environ)
    if devices and isinstance(worker.name, int):
        env["CUDA_VISIBLE_DEVICES"] = devices[worker.name % len(devices)]
    gpu = env.get("CUDA_VISIBLE_DEVICES", "")
    logs = StageLogs(Path(root), stages, lambda event: worker.log_event(TOPIC, event), gpu)
    process = subprocess.Popen(
        dvc_command(stages),
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as a whole, by us
    )
    code = _follow(process, logs, stopped)
    if code is None:
        raise StageStopped(logs.stop())
    if code != 0:
        raise logs.fail(code)
    logs.flush()
    logs.finish()
    return logs.done


def _follow(process: subprocess.Popen, logs: StageLogs, stopped: object) -> int | None:
    """Pass DVC's output to `logs` until it exits (its status) or the run is interrupted
    (None, after stopping it)."""
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    fd = process.stdout.fileno()
    checked = time.monotonic()
    while True:
        if selector.select(timeout=READ_SECONDS):
            data = os.read(fd, 65536)
            if not data:  # DVC closed its output: it is ending
                process.stdout.close()
                return process.wait()
            logs.feed(data)
        if time.monotonic() - checked >= STOP_CHECK_SECONDS:
            checked = time.monotonic()
            if stopped.is_set():
                stop_group(process)
                return None


def stop_group(process: subprocess.Popen) -> None:
    """Ctrl-C to the stage's whole process group (DVC and the stage's command), as a terminal
    sends it: the stage keeps its resume state and DVC records nothing. SIGKILL after a grace
    period, so that nothing outlives the run."""
    for signum, grace in ((signal.SIGINT, STOP_GRACE_SECONDS), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # what the group left (a child that ignored it)
        os.killpg(process.pid, signal.SIGKILL)


def _reason(text: str) -> str:
    """The line that says why: the stage's own error line (`[stage] ERROR ...`), else DVC's,
    else the last line written (a traceback's last line names the exception)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    own = [line for line in lines if re.match(r"^\[\w+\] ERROR ", line)]
    dvc = [line for line in lines if line.startswith("ERROR")]
    return (own or dvc or lines or ["no output"])[-1]

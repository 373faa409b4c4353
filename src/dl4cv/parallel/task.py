"""One Dask task: one stage through `dvc repro --single-item`, its output in a log file.

DVC decides whether the stage is up to date, takes its locks and writes dvc.lock; this only
starts it, waits, and stops it when the run is interrupted. `--wait-for-lock`: DVC holds the
repository lock briefly before and after each stage's command, and a command started in that
moment would fail with "Unable to acquire lock" instead of waiting its turn.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TOPIC = "dl4cv-stage"  # the Dask event topic of stage starts (the caller prints them)
POLL_SECONDS = 1.0  # how often a running stage looks whether the run was interrupted
STOP_GRACE_SECONDS = 30.0  # after Ctrl-C, a stage has this long to stop before SIGKILL
SKIPPED = "didn't change, skipping"  # what `dvc repro` prints for a stage already up to date
CACHED = "is cached - skipping run"  # ... and for one restored from the run cache


class StageFailed(Exception):
    """The stage ended with an error: (stage, a message naming it and its log)."""

    def __str__(self) -> str:
        return self.args[1]


class StageStopped(Exception):
    """The run was interrupted before or while the stage ran: (stage, whether it had started)."""


@dataclass(frozen=True)
class Outcome:
    stage: str
    seconds: float
    verdict: str  # ran | up to date | restored from the run cache


def dvc_command(stage: str) -> list[str]:
    return [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", stage]


def run_stage(
    root: str, stage: str, log_file: str, stop: str, devices: Sequence[str], *_needs: object
) -> Outcome:
    """Run `stage` of the repository at `root` (a path this worker sees), its output in
    `log_file`; stop it when the Dask event `stop` is set. `devices`: the GPUs of a local
    cluster's workers, worker n gets devices[n % len] (empty: the worker's own environment).
    `_needs` are the outcomes of the stages it depends on: Dask starts it after them.

    Its start and its end are events of the topic TOPIC, in the order they happened."""
    from distributed import Event, get_worker

    worker = get_worker()
    stopped = Event(stop)
    if stopped.is_set():
        raise StageStopped(stage, False)
    env = dict(os.environ)
    if devices and isinstance(worker.name, int):
        env["CUDA_VISIBLE_DEVICES"] = devices[worker.name % len(devices)]
    worker.log_event(TOPIC, {"stage": stage, "start": env.get("CUDA_VISIBLE_DEVICES") or ""})
    try:
        outcome = _execute(root, stage, Path(log_file), env, stopped, worker.address)
    except StageFailed as exc:
        worker.log_event(TOPIC, {"stage": stage, "end": f"FAILED {exc}"})
        raise
    except StageStopped:
        worker.log_event(TOPIC, {"stage": stage, "end": f"stopped {stage}"})
        raise
    took = f" {outcome.seconds:.1f} s" if outcome.verdict == "ran" else ""
    worker.log_event(TOPIC, {"stage": stage, "end": f"done  {stage}{took} ({outcome.verdict})"})
    return outcome


def _execute(
    root: str, stage: str, log_file: Path, env: dict[str, str], stopped: object, where: str
) -> Outcome:
    if not (Path(root) / "dvc.yaml").is_file():
        raise StageFailed(stage, f"{stage}: no dvc.yaml in {root} on the worker at {where}")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            dvc_command(stage),
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole, by us
        )
        code = _wait(process, stopped)
    seconds = time.monotonic() - started
    if code is None:
        raise StageStopped(stage, True)
    text = log_file.read_text(errors="replace")
    if code != 0:
        shown = log_file.relative_to(root) if log_file.is_relative_to(root) else log_file
        message = f"{stage} failed (exit {code}): {_last_line(text)}; log: {shown}"
        raise StageFailed(stage, message)
    verdict = "up to date" if SKIPPED in text else "restored" if CACHED in text else "ran"
    return Outcome(stage, seconds, verdict)


def _wait(process: subprocess.Popen, stopped: object) -> int | None:
    """The stage's exit status; None when the run was interrupted and the stage stopped."""
    while True:
        try:
            return process.wait(timeout=POLL_SECONDS)
        except subprocess.TimeoutExpired:
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


def _last_line(text: str) -> str:
    """The line that says why: the stage's own error line (`[stage] ERROR ...`), else DVC's,
    else the last line written (a traceback's last line names the exception)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    own = [line for line in lines if re.match(r"^\[\w+\] ERROR ", line)]
    dvc = [line for line in lines if line.startswith("ERROR")]
    return (own or dvc or lines or ["no output"])[-1]

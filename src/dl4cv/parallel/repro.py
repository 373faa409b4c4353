"""`dvc repro` with up to N stages at a time, scheduled on Dask.

    python -m dl4cv.parallel --jobs N [--scheduler ADDRESS] [--gpus 0,1|none] [STAGE ...]

The plan (dl4cv.parallel.plan) lists the stages that may need to run, cut into tasks; each task
is one `dvc repro --single-item <stage>...` (dl4cv.parallel.task), started once the tasks it
depends on have succeeded, the longest chains of work first. Without `--scheduler` a local
cluster of N workers runs them; with one, its workers do (they must see this repository at the
same path). Each stage's output goes to logs/repro/<stage>.log; the terminal gets one line per
stage start and end, with how many stages run, wait and are done.

A failed stage lets the independent ones finish, starts none of its dependents, and the run
exits 1 naming it and its log. Ctrl-C or SIGTERM stops every stage (DVC records none of them,
the trainings keep their resume state) and exits 130; `dvc repro` or this command again
continues from there.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from dl4cv.parallel.plan import Plan, PlanError, critical_paths, make_plan
from dl4cv.parallel.task import LOG_DIR, TOPIC, StageFailed, StageStopped, run_stages
from dl4cv.runtime.fileio import write_json
from dl4cv.runtime.gpus import find_gpus

if TYPE_CHECKING:
    from distributed import Client

TIMES_FILE = LOG_DIR / "seconds.json"  # how long each stage took when it last ran
ADDRESS = r"(tcp|tls|ucx|ws|wss)://\S+|\S+:\d+"  # what Dask's Client takes
CONNECT_SECONDS = 5  # an unreachable scheduler is reported after this long
STOP_WAIT_SECONDS = 60  # after Ctrl-C, how long to wait for the stages to stop


class ReproError(Exception):
    """Bad input or an unreachable scheduler: one line for the user."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM."""


class Progress:
    """One line per stage start and end, with how many run, wait and are done."""

    def __init__(self, plan: Plan) -> None:
        self.total = len(plan)
        self.started: set[str] = set()
        self.ended: set[str] = set()
        self.lock = threading.Lock()

    def say(self, text: str) -> None:
        with self.lock:
            running = len(self.started - self.ended)
            waiting = self.total - len(self.started | self.ended)
            counts = f"{running} running, {waiting} waiting, {len(self.ended)} done"
            print(f"{time.strftime('%H:%M:%S')} {text} [{counts}]", flush=True)

    def event(self, event: tuple[float, dict]) -> None:
        """A stage's start or end, as its task announced it (dl4cv.parallel.task)."""
        message = event[1]
        if "start" in message:
            with self.lock:
                self.started.add(message["stage"])
            gpu = f" on GPU {message['start']}" if message["start"] else ""
            self.say(f"start {message['stage']}{gpu}")
        else:
            self.end(message["stage"], message["end"])

    def end(self, stage: str, text: str) -> None:
        with self.lock:
            self.ended.add(stage)
        self.say(text)


@contextmanager
def dask_client(jobs: int, scheduler: str | None) -> Iterator[Client]:
    """A client of the scheduler at `scheduler`, else of a local cluster of `jobs` workers,
    closed (the local cluster stopped) on the way out."""
    import logging

    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_SECONDS)
        except (OSError, TimeoutError) as exc:
            raise ReproError(f"--scheduler {scheduler}: no Dask scheduler answers ({exc})") from exc
        with client:
            yield client
        return
    quiet = {  # its HTTP servers answer nothing: no page of a browser reads the run
        "distributed.scheduler.http.routes": [],
        "distributed.worker.http.routes": [],
    }
    with (
        dask.config.set(quiet),
        LocalCluster(
            n_workers=jobs,
            threads_per_worker=1,
            processes=False,  # each task is a `dvc` process: threads suffice to wait on them
            dashboard_address="127.0.0.1:0",  # its HTTP server: loopback, any free port
            silence_logs=logging.CRITICAL,  # a failed stage is reported here, once
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def run(
    client: Client, root: Path, plan: Plan, devices: Sequence[str], times: dict[str, float]
) -> list[str]:
    """Run `plan` on Dask, the longest chains of work first; the failed stages' messages
    (empty when all succeeded). `times` gains the seconds of each stage that ran.

    A task is handed to Dask once the tasks it needs have succeeded and a worker thread is
    free, the longest chain first: Dask then places it on that free worker. (Given everything
    at once with its dependencies, Dask places a waiting task on a busy worker early, and a
    free worker can sit idle until work stealing moves it, seconds later.)"""
    from distributed import Event, as_completed, wait

    chain = critical_paths(plan, times)
    progress = Progress(plan)
    stop_name = f"dl4cv-stop-{uuid.uuid4().hex}"
    stop = Event(stop_name, client=client)
    dependents: dict[str, list[str]] = {task: [] for task in plan.tasks}
    for task, needs in plan.needs.items():
        for need in needs:
            dependents[need].append(task)
    waiting = {task: set(needs) for task, needs in plan.needs.items()}

    def submit(task: str):
        future = client.submit(
            run_stages,
            str(root),
            plan.tasks[task],
            stop_name,
            list(devices),
            key=f"{task}-{uuid.uuid4().hex[:8]}",
            pure=False,
            priority=round(chain[task] * 10),
            retries=0,
        )
        submitted[future.key] = task
        return future

    def fill() -> None:
        """Submit ready tasks, longest chain first, while a worker thread is free."""
        free = sum(client.nthreads().values()) - running.count()
        for task in sorted(ready, key=chain.__getitem__, reverse=True)[: max(free, 0)]:
            ready.remove(task)
            running.add(submit(task))

    submitted: dict[str, str] = {}
    ready = {task for task, needs in waiting.items() if not needs}
    running = as_completed()
    client.subscribe_topic(TOPIC, progress.event)
    failures: list[str] = []
    try:
        with _interruptible():
            fill()
            for future in running:
                task = submitted[future.key]
                if future.status != "finished":
                    failures.append(_failure(future, task))
                else:
                    ran = future.result().items()
                    times.update({s: round(t, 1) for s, (t, how) in ran if how == "ran"})
                    for dependent in dependents[task]:
                        waiting[dependent].discard(task)
                        if not waiting[dependent]:
                            ready.add(dependent)
                fill()
    except Interrupted:
        stop.set()
        print("interrupted: stopping every stage ...", file=sys.stderr, flush=True)
        futures = list(running.futures)
        wait(futures, timeout=STOP_WAIT_SECONDS)
        stopped = [s for f in futures if f.status == "error" for s in _stopped(f)]
        if stopped:
            print(f"interrupted: stopped {', '.join(stopped)}", file=sys.stderr, flush=True)
        raise
    finally:
        client.unsubscribe_topic(TOPIC)
    for stage in plan.order:  # what a failure kept from starting
        if stage not in progress.ended:
            progress.end(stage, f"not started {stage} (a stage it needs failed)")
    return failures


def _stopped(future) -> tuple[str, ...]:
    """The stages the task of `future` was running when the run was interrupted."""
    error = future.exception()
    return error.args[0] if isinstance(error, StageStopped) else ()


def _failure(future, task: str) -> str:
    """Why the task failed: its stage's message, or how the task itself broke (a lost worker)."""
    error = future.exception()
    if isinstance(error, StageFailed):
        return str(error)
    return f"{task}: {type(error).__name__}: {error}"


class _interruptible:
    """SIGINT and SIGTERM raise Interrupted in the main thread while inside."""

    def __enter__(self) -> None:
        def interrupt(_signum: int, _frame: object) -> None:
            raise Interrupted

        self.saved = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}

    def __exit__(self, *_exc: object) -> None:
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)


def read_times(root: Path) -> dict[str, float]:
    """The seconds each stage took when it last ran here (none yet: an empty dict)."""
    try:
        times = json.loads((root / TIMES_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in times.items()} if isinstance(times, dict) else {}


def positive_int(text: str) -> int:
    if not re.fullmatch(r"\d+", text.strip()) or int(text) < 1:
        raise ReproError(f"--jobs (JOBS): expected a whole number of at least 1, got {text!r}")
    return int(text)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dl4cv.parallel", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--jobs", "-j", default="1", help="stages at a time (default 1)")
    parser.add_argument(
        "--scheduler", help="address of a running Dask scheduler (default: a local cluster)"
    )
    parser.add_argument(
        "--gpus", help="GPU indices for the local workers, e.g. 0,1, or none (default: all)"
    )
    parser.add_argument("stages", nargs="*", help="stages to reproduce with what they need")
    args = parser.parse_args(argv)
    args.jobs = positive_int(args.jobs)
    if args.gpus is not None and not re.fullmatch(r"none|\d+(,\d+)*", args.gpus):
        raise ReproError(f"--gpus: expected indices like 0,1 or none, got {args.gpus!r}")
    if args.scheduler and not re.fullmatch(ADDRESS, args.scheduler):
        raise ReproError(
            f"--scheduler: expected an address like tcp://host:8786, got {args.scheduler!r}"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    root = Path.cwd()
    t0 = time.monotonic()
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
        if not (root / "dvc.yaml").is_file():
            raise ReproError(f"no dvc.yaml in {root}: run it in the repository's root")
        with dask_client(args.jobs, args.scheduler) as client:
            times = read_times(root)
            plan = make_plan(root, args.stages, times)
            if not plan.order:
                print(f"parallel: all {plan.up_to_date} stages up to date", flush=True)
                return 0
            listed = args.gpus.split(",") if args.gpus is not None else find_gpus()
            gpus = [g for g in listed if g != "none"]
            devices = gpus if len(gpus) > 1 and not args.scheduler else []
            print(
                f"parallel: {len(plan)} stages to check or run ({len(plan.tasks)} tasks), "
                f"{plan.up_to_date} up to date; "
                + (f"on {args.scheduler}" if args.scheduler else f"{args.jobs} at a time")
                + (f", GPUs {','.join(devices)}" if devices else "")
                + f"; logs in {LOG_DIR}/",
                flush=True,
            )
            try:
                failures = run(client, root, plan, devices, times)
            finally:
                write_json(root / TIMES_FILE, dict(sorted(times.items())))
    except (ReproError, PlanError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (Interrupted, KeyboardInterrupt):
        print("interrupted: dvc repro (or this command) continues from here", file=sys.stderr)
        return 130
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    if failures:
        return 1
    print(f"parallel: {len(plan)} stages done in {time.monotonic() - t0:.1f} s", flush=True)
    return 0

"""`dvc repro` with up to N stages at a time, scheduled on Dask.

    python -m dl4cv.parallel --jobs N [--scheduler ADDRESS] [--gpus 0,1|none] [STAGE ...]

The plan (dl4cv.parallel.plan) lists the stages that may need to run; each becomes one Dask
task, `dvc repro --single-item <stage>` (dl4cv.parallel.task), started once the tasks of the
stages it depends on have succeeded. Without `--scheduler` a local cluster of N workers runs
them; with one, its workers do (they must see this repository at the same path). Each stage's
output goes to logs/repro/<stage>.log; the terminal gets one line per stage start and end.

A failed stage lets the independent ones finish, starts none of its dependents, and the run
exits 1 naming it and its log. Ctrl-C or SIGTERM stops every stage (DVC records none of them,
the trainings keep their resume state) and exits 130; `dvc repro` or this command again
continues from there.
"""

from __future__ import annotations

import argparse
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

from dl4cv.gpus import find_gpus
from dl4cv.parallel.plan import Plan, PlanError, make_plan
from dl4cv.parallel.task import TOPIC, StageFailed, StageStopped, run_stage

if TYPE_CHECKING:
    from distributed import Client

LOG_DIR = Path("logs") / "repro"
ADDRESS = r"(tcp|tls|ucx|ws|wss)://\S+|\S+:\d+"  # what Dask's Client takes
CONNECT_SECONDS = 5  # an unreachable scheduler is reported after this long
STOP_WAIT_SECONDS = 60  # after Ctrl-C, how long to wait for the stages to stop


class ReproError(Exception):
    """Bad input, an unreachable scheduler, a failed stage: one line for the user."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM."""


def log_file(root: Path, stage: str) -> Path:
    return root / LOG_DIR / f"{stage.replace('/', '_')}.log"


class Progress:
    """One line per stage start and end, with how many run, wait and are done."""

    def __init__(self, plan: Plan) -> None:
        self.total = len(plan)
        self.started: set[str] = set()
        self.ended: set[str] = set()
        self.t0 = time.monotonic()
        self.lock = threading.Lock()

    def say(self, text: str) -> None:
        with self.lock:
            running = len(self.started - self.ended)
            waiting = self.total - len(self.started | self.ended)
            clock = time.strftime("%H:%M:%S")
            counts = f"{running} running, {waiting} waiting, {len(self.ended)} done"
            print(f"{clock} {text} [{counts}]", flush=True)

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

    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_SECONDS)
        except (OSError, TimeoutError) as exc:
            raise ReproError(f"--scheduler {scheduler}: no Dask scheduler answers ({exc})") from exc
        with client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=jobs,
            threads_per_worker=1,
            processes=False,  # each task is a `dvc` process: threads suffice to wait on them
            dashboard_address=None,
            silence_logs=logging.CRITICAL,  # a failed stage is reported here, once
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def run(client: Client, root: Path, plan: Plan, devices: Sequence[str]) -> list[str]:
    """Run `plan` on Dask; the failed stages' messages (empty when all succeeded)."""
    from distributed import Event, as_completed, wait

    progress = Progress(plan)
    stop_name = f"dl4cv-stop-{uuid.uuid4().hex}"
    stop = Event(stop_name, client=client)
    failures: list[str] = []
    client.subscribe_topic(TOPIC, progress.event)
    futures = {}
    for rank, stage in enumerate(plan.order):
        futures[stage] = client.submit(
            run_stage,
            str(root),
            stage,
            str(log_file(root, stage)),
            stop_name,
            list(devices),
            *(futures[need] for need in plan.needs[stage]),
            key=f"{stage}-{uuid.uuid4().hex[:8]}",
            pure=False,
            priority=len(plan) - rank,
            retries=0,
        )
    names = {future.key: stage for stage, future in futures.items()}
    try:
        with _interruptible():
            for future in as_completed(list(futures.values())):
                _report(future, names[future.key], progress, failures)
    except Interrupted:
        stop.set()
        print("interrupted: stopping every stage ...", file=sys.stderr, flush=True)
        wait(list(futures.values()), timeout=STOP_WAIT_SECONDS)
        stopped = [stage for stage, f in futures.items() if _stopped(f)]
        if stopped:
            print(f"interrupted: stopped {', '.join(stopped)}", file=sys.stderr, flush=True)
        raise
    finally:
        client.unsubscribe_topic(TOPIC)
    return failures


def _stopped(future) -> bool:
    """Whether the stage of `future` was running when the run was interrupted."""
    error = future.exception() if future.status == "error" else None
    return isinstance(error, StageStopped) and error.args[1]


def _report(future, stage: str, progress: Progress, failures: list[str]) -> None:
    """Add a failed stage's message to `failures`; say which stages never started because a
    stage they need failed (the tasks announce the rest themselves)."""
    if future.status == "finished":
        return
    error = future.exception()
    if isinstance(error, StageStopped):
        return
    if isinstance(error, StageFailed) and error.args[0] == stage:
        failures.append(str(error))
    elif isinstance(error, StageFailed):  # raised by a stage it needs: it never started
        progress.end(stage, f"not started {stage} (a stage it needs failed)")
    else:  # the task itself broke (a worker lost): not announced by the task
        failures.append(f"{stage}: {type(error).__name__}: {error}")
        progress.end(stage, f"FAILED {stage}: {type(error).__name__}: {error}")


class _interruptible:
    """SIGINT and SIGTERM raise Interrupted in the main thread while inside."""

    def __enter__(self) -> None:
        def interrupt(_signum: int, _frame: object) -> None:
            raise Interrupted

        self.saved = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}

    def __exit__(self, *_exc: object) -> None:
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)


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
    if args.scheduler and not re.fullmatch(
        r"(tcp|tls|inproc|ucx|ws|wss)://\S+|\S+:\d+", args.scheduler
    ):
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
            plan = make_plan(root, args.stages)
            if not plan.order:
                print(f"parallel: all {plan.up_to_date} stages up to date", flush=True)
                return 0
            listed = args.gpus.split(",") if args.gpus is not None else find_gpus()
            gpus = [g for g in listed if g != "none"]
            devices = gpus if len(gpus) > 1 and not args.scheduler else []
            print(
                f"parallel: {len(plan)} stages to check or run, {plan.up_to_date} up to date; "
                f"{args.jobs} at a time on {args.scheduler or 'a local Dask cluster'}"
                + (f", GPUs {','.join(devices)}" if devices else "")
                + f"; logs in {LOG_DIR}/",
                flush=True,
            )
            _prepare_tracking()
            failures = run(client, root, plan, devices)
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


def _prepare_tracking() -> None:
    """Create and migrate the MLflow store once, before stages that each find none race to
    migrate the same sqlite file."""
    import logging

    from dl4cv import tracking

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial tables..."
    tracking.prepare()

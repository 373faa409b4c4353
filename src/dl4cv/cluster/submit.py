"""The caller's side: check what the workers will need, submit one Dask task per experiment,
report each as it ends, and fetch the finished ones (`dvc exp pull`).

Checked before anything is submitted, each a one-line error: the commit is on the Git remote
(a worker clones it from there), no tracked file has uncommitted changes (they would not reach
the workers), a default DVC remote is configured, the scheduler answers.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from dl4cv.cluster.sweep import Experiment
from dl4cv.cluster.task import run_experiment

CONNECT_SECONDS = 5  # an unreachable scheduler is reported after this long


class ClusterError(Exception):
    """Bad input, or an experiment that failed: one line for the user (a log may follow)."""


def _run(*args: str, check: bool = True) -> str:
    done = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise ClusterError(f"{' '.join(args[:3])} failed: {last[-1]}")
    return done.stdout.strip()


def _dvc(*args: str, check: bool = True) -> str:
    return _run(sys.executable, "-m", "dvc", *args, check=check)


def check_repository(git_remote: str) -> tuple[str, str]:
    """The Git remote's address and the commit to run; ClusterError if a worker could not get
    them, or the data they need."""
    url = _run("git", "remote", "get-url", git_remote, check=False)
    if not url:
        raise ClusterError(f"no Git remote named {git_remote!r}: git remote add {git_remote} URL")
    commit = _run("git", "rev-parse", "HEAD")
    dirty = _run("git", "status", "--porcelain", "--untracked-files=no")
    if dirty:
        first = dirty.splitlines()[0][3:]
        raise ClusterError(
            f"uncommitted changes ({first}...) would not reach the workers: commit and push them"
        )
    _run("git", "fetch", "-q", git_remote)
    remote_heads = _run("git", "branch", "-r", "--contains", commit, check=False)
    if not any(line.strip().startswith(f"{git_remote}/") for line in remote_heads.splitlines()):
        raise ClusterError(
            f"commit {commit[:7]} is not on the Git remote {git_remote!r}: git push it first"
        )
    default = subprocess.run(
        [sys.executable, "-m", "dvc", "remote", "default"], capture_output=True, text=True
    )
    if default.returncode != 0 or not default.stdout.strip():
        raise ClusterError(
            "no default DVC remote: the workers pull the data from it and push to it "
            "(dvc remote add -d NAME URL)"
        )
    return url, commit


def connect(scheduler: str) -> Any:
    from distributed import Client

    try:
        return Client(scheduler, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"--scheduler {scheduler}: no Dask scheduler answers ({exc})") from exc


def run(experiments: Sequence[Experiment], scheduler: str, git_remote: str = "origin") -> None:
    """Run `experiments` on the cluster at `scheduler`, one task each; pull the ones that
    finished. ClusterError names the ones that failed."""
    url, commit = check_repository(git_remote)
    taken = set(_dvc("exp", "list", "--name-only", git_remote, check=False).split())
    todo = [e for e in experiments if e.name not in taken]
    for exp in experiments:
        if exp.name in taken:
            print(f"cluster: {exp.name} is already on {git_remote}: not run again", flush=True)
    with connect(scheduler) as client:
        futures = {
            client.submit(
                run_experiment,
                {"git_url": url, "commit": commit, "name": e.name, "overrides": e.overrides},
                key=f"dl4cv-{e.name}-{uuid.uuid4().hex[:8]}",
                pure=False,
            ): e
            for e in todo
        }
        print(f"cluster: {len(futures)} experiment(s) submitted to {scheduler}", flush=True)
        failed = _wait(futures)
    done = [e.name for e in experiments if e.name not in failed]
    if done:
        _dvc("exp", "pull", git_remote, *done)
        print(f"cluster: {', '.join(done)} pulled: dvc exp show lists them", flush=True)
    if failed:
        raise ClusterError(f"{', '.join(failed)} failed (their logs are above)")


def _wait(futures: dict[Any, Experiment]) -> list[str]:
    """Print each experiment as it ends; the names of those that failed."""
    from distributed import as_completed

    failed, started = [], time.monotonic()
    for future in as_completed(futures):
        exp = futures[future]
        elapsed = time.monotonic() - started
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - the task's own error, or KilledWorker
            failed.append(exp.name)
            print(f"cluster: {exp.name} FAILED after {elapsed:.0f} s: {exc}", flush=True)
            continue
        seconds = result["ended"] - result["started"]
        print(
            f"cluster: {exp.name} {result['status']} by worker {result['worker']} on "
            f"{result['host']} ({seconds:.0f} s; {elapsed:.0f} s since submitted)",
            flush=True,
        )
    return failed

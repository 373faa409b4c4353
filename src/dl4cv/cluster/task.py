"""One experiment, run by whichever Dask worker gets it, in a scratch folder of its own.

The worker reads its credentials where it keeps them, never from the task: the DVC remote's
login and key in its global DVC config (`dvc remote modify --global <remote> keyfile ...`,
~/.config/dvc/config), the tracking server in its MLFLOW_TRACKING_URI. The task carries only
the Git remote's address, the commit, the experiment's name and its `-S` settings.

A task is safe to run twice (Dask reruns it when its worker dies): an experiment already in
the Git remote is not run again, and the MLflow runs a killed attempt left RUNNING are marked
FAILED before the next attempt starts.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TASK_ENV = "DL4CV_CLUSTER_TASK"  # the experiment's name, recorded as an MLflow tag
LOG_TAIL_LINES = 30


class TaskFailed(Exception):
    """A step of the experiment failed: its command and the end of its output."""


def run_experiment(spec: dict[str, Any]) -> dict[str, Any]:
    """Clone `spec["git_url"]` at `spec["commit"]`, run the experiment `spec["name"]` with
    `spec["overrides"]`, push it to the Git remote and the DVC remote. Returns when and where
    it ran."""
    started = time.time()
    scratch = Path(tempfile.mkdtemp(prefix=f"dl4cv-{spec['name']}-", dir=_local_directory()))
    repo = scratch / "repo"
    env = os.environ | {TASK_ENV: spec["name"]}

    def sh(*args: str, cwd: Path = repo) -> str:
        done = subprocess.run(
            args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
        output = done.stdout + done.stderr
        with (scratch / "task.log").open("a") as log:
            log.write(f"$ {' '.join(args)}\n{output}")
        if done.returncode != 0:
            tail = "\n".join(output.strip().splitlines()[-LOG_TAIL_LINES:])
            raise TaskFailed(
                f"{spec['name']} on {socket.gethostname()}: `{' '.join(args[:4])}` "
                f"exited {done.returncode} (log: {scratch / 'task.log'})\n{tail}"
            )
        return output

    dvc = (sys.executable, "-m", "dvc")
    sh("git", "clone", "-q", spec["git_url"], str(repo), cwd=scratch)
    sh("git", "checkout", "-q", spec["commit"])
    if spec["name"] in sh(*dvc, "exp", "list", "--name-only", "origin").split():
        status = "already in the Git remote"  # an earlier attempt pushed it, then died
    else:
        from dl4cv.tracking import fail_running  # noqa: PLC0415 (MLflow: only here)

        fail_running("dl4cv.cluster_task", spec["name"])
        settings = [a for kv in spec["overrides"] for a in ("-S", kv)]
        sh(*dvc, "exp", "run", "--pull", "--allow-missing", "-n", spec["name"], *settings)
        sh(*dvc, "exp", "push", "origin", spec["name"])
        status = "pushed"
    shutil.rmtree(scratch, ignore_errors=True)
    return {
        "name": spec["name"],
        "status": status,
        "host": socket.gethostname(),
        "worker": _worker_name(),
        "started": started,
        "ended": time.time(),
    }


def _local_directory() -> str:
    from distributed import get_worker

    return get_worker().local_directory


def _worker_name() -> str:
    from distributed import get_worker

    return str(get_worker().name)

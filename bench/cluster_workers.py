"""Four quick experiments (a learning-rate sweep of ShallowNet on the bundled digits) on a
Dask cluster of 1 and of 2 workers on this machine, as `python -m dl4cv.cluster` runs them:
each worker in its own folder and HOME, a bare Git remote, a local DVC remote, one sqlite
MLflow store. Prints the wall time of each.

    .venv/bin/python bench/cluster_workers.py [--workers 1 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.dvc_repo import (  # noqa: E402
    digits_params,
    free_port,
    make_repo,
    run,
    stages_of,
    user_env,
)

RATES = "0.01,0.02,0.1,0.2"  # none is the baseline's 0.05: four trainings
EXP = "shallownet_digits"


def project(root: Path, env: dict[str, str]) -> Path:
    shallownet = {
        "chapter": 12,
        "dataset": "digits",
        "model": {"name": "shallownet"},
        "optimizer": {"name": "sgd", "learning_rate": 0.05},
        "train": {"batch_size": 8, "epochs": 12},
    }
    stages = stages_of("download", "preprocess", "split", "train", "evaluate")
    repo = make_repo(root / "caller", digits_params({EXP: shallownet}, "quick"), stages)
    run(["git", "init", "-q", "--bare", str(root / "origin.git")], root, env)
    run(["git", "remote", "add", "origin", str(root / "origin.git")], repo, env)
    run(["dvc", "remote", "add", "-d", "team", str(root / "dvc-store")], repo, env)
    run(["dvc", "repro"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "data"], repo, env)
    run(["git", "push", "-q", "-u", "origin", "HEAD:main"], repo, env)
    run(["dvc", "push"], repo, env)
    return repo


def cluster_run(root: Path, workers: int, env: dict[str, str]) -> float:
    repo = project(root, env)
    address = f"tcp://127.0.0.1:{free_port()}"
    dask = str(Path(sys.executable).parent / "dask")
    procs = [
        subprocess.Popen(
            [
                dask,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                address.rsplit(":", 1)[1],
                "--no-dashboard",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    ]
    for n in range(workers):
        folder = root / f"w{n + 1}"
        (folder / "home").mkdir(parents=True)
        (folder / "home" / ".gitconfig").write_text("[user]\n name = w\n email = w@w\n")
        procs.append(
            subprocess.Popen(
                [
                    dask,
                    "worker",
                    address,
                    "--name",
                    f"w{n + 1}",
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--local-directory",
                    str(folder / "scratch"),
                ],
                cwd=folder,
                env=env | {"HOME": str(folder / "home")},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        )
    try:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "dl4cv.cluster", "--scheduler", address,
             "-S", f"experiments.{EXP}.optimizer.learning_rate={RATES}"],
            cwd=repo, env=env, text=True, stdout=sys.stdout, stderr=sys.stderr,
        )  # fmt: skip
        seconds = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(f"dl4cv.cluster exited {done.returncode}")
        return seconds
    finally:
        for proc in reversed(procs):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    env = user_env()
    for workers in args.workers:
        with tempfile.TemporaryDirectory(prefix=f"dl4cv-cluster-{workers}-") as tmp:
            root = Path(tmp)
            env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
            seconds = cluster_run(root, workers, env)
            print(f"bench: 4 experiments on {workers} worker(s): {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()

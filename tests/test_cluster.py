"""Experiments on a Dask cluster whose workers share no folder with the caller, on 127.0.0.1
only: a `dask scheduler` and two `dask worker` processes, each with its own working folder and
HOME (its SSH key for the DVC remote in ~/.ssh/config, its MLFLOW_TRACKING_URI); a bare Git
remote; the SSH DVC remote of tests/test_team.py; an MLflow server on PostgreSQL
(tests/test_tracking_server.py). A sweep of two values and one seed run there while one worker
is SIGKILLed mid-training: each experiment lands once, nothing stays RUNNING.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.dvc_repo import digits_params, free_port, make_repo, run, stages_of, user_env
from tests.test_team import Sshd, point_at_remote, sshd  # noqa: F401 (a fixture)
from tests.test_tracking_server import Server, postgres, started_server  # noqa: F401

pytestmark = pytest.mark.integration

EXP = "shallownet_digits"
LR = "experiments.shallownet_digits.optimizer.learning_rate"
COMMIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm"]


def params() -> dict:
    shallownet = {
        "chapter": 12,
        "dataset": "digits",
        "model": {"name": "shallownet"},
        "optimizer": {"name": "sgd", "learning_rate": 0.05},
        # Long enough on 2 busy cores (~6 s) for the test to kill a worker mid-training.
        "train": {"batch_size": 8, "epochs": 8, "checkpoint_interval_s": 0},
    }
    return digits_params({EXP: shallownet}, "quick")


def caller_repo(tmp_path: Path, env: dict[str, str], dvc_remote: str | None) -> Path:
    """The project committed and pushed to a bare Git remote (`origin`), with `dvc_remote` as
    the default DVC remote."""
    stages = stages_of("download", "preprocess", "split", "train", "evaluate")
    repo = make_repo(tmp_path / "caller", params(), stages)
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", str(origin)], tmp_path, env)
    run(["git", "remote", "add", "origin", str(origin)], repo, env)
    if dvc_remote is not None:
        run(["dvc", "remote", "add", "-d", "team", dvc_remote], repo, env)
        run(["git", "add", "-A"], repo, env)
        run([*COMMIT, "DVC remote"], repo, env)
    run(["git", "push", "-q", "-u", "origin", "HEAD:main"], repo, env)
    return repo


class Cluster:
    """A `dask scheduler` and `dask worker` processes, each in a folder of its own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
        with (self.root / f"{name}.log").open("w") as log:
            self.procs[name] = subprocess.Popen(
                [str(Path(sys.executable).parent / "dask"), *args],
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # killed as a group, with the experiment it runs
            )

    def scheduler(self) -> None:
        port = self.address.rsplit(":", 1)[1]
        args = ["scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"]
        self._start("scheduler", args, user_env(), self.root)

    def worker(self, name: str, server: Sshd, tracking: str) -> Path:
        """A worker whose HOME holds what a team's worker keeps there: the DVC remote's login
        and key (~/.ssh/config), its host key, a Git identity."""
        folder = self.root / name
        home = folder / "home"
        (home / ".ssh").mkdir(parents=True)
        (home / ".ssh" / "known_hosts").write_text((server.home / ".ssh/known_hosts").read_text())
        user = os.environ.get("USER", "root")
        (home / ".ssh" / "config").write_text(
            f"Host 127.0.0.1\n  User {user}\n  IdentityFile {server.key}\n"
        )
        (home / ".gitconfig").write_text("[user]\n  name = worker\n  email = w@example.org\n")
        env = user_env(HOME=str(home), MLFLOW_TRACKING_URI=tracking)
        args = [
            "worker", self.address, "--name", name, "--nthreads", "1", "--no-nanny",
            "--no-dashboard", "--local-directory", str(folder / "scratch"),
        ]  # fmt: skip
        self._start(name, args, env, folder)
        return folder

    def kill(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait()

    def stop(self) -> None:
        for proc in reversed(self.procs.values()):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    root = tmp_path / "cluster"
    root.mkdir()
    found = Cluster(root)
    found.scheduler()
    try:
        yield found
    finally:
        found.stop()


def training_in(folder: Path) -> bool:
    """Whether a training in this worker's scratch folder has saved an epoch."""
    return any(folder.glob(f"scratch/**/dl4cv-*/repo/models/{EXP}/last/state.json"))


def test_a_sweep_and_a_seed_on_two_workers_land_once_though_one_is_killed(
    tmp_path,
    sshd,  # noqa: F811
    started_server: Server,  # noqa: F811 (launched; answers once the caller's repository is ready)
    cluster,
):
    env = user_env(HOME=str(sshd.home), MLFLOW_TRACKING_URI=started_server.url)
    remote = f"ssh://127.0.0.1:{sshd.port}{tmp_path / 'dvc-store'}"
    repo = caller_repo(tmp_path, env, remote)
    point_at_remote(repo, sshd, env)
    run(["dvc", "repro"], repo, env)  # the data, once: the workers pull it
    run(["git", "add", "-A"], repo, env)
    run([*COMMIT, "data"], repo, env)
    run(["git", "push", "-q", "origin", "HEAD:main"], repo, env)
    run(["dvc", "push"], repo, env)
    tracking_server = started_server.wait_healthy()
    workers = {name: cluster.worker(name, sshd, tracking_server.url) for name in ("w1", "w2")}

    logs = tmp_path / "logs"
    logs.mkdir()
    commands = {
        "sweep": [sys.executable, "-m", "dl4cv.cluster", "--scheduler", cluster.address,
                  "-S", f"{LR}=0.02,0.1"],
        "seeds": [sys.executable, "-m", "dl4cv.seeds", "--scheduler", cluster.address,
                  "--seeds", "1", "--start", "43", "--profile", "quick"],
        "bad": [sys.executable, "-m", "dl4cv.cluster", "--scheduler", cluster.address,
                "--name", "bad", "-S", f"{LR}=-1"],
    }  # fmt: skip
    procs = {
        name: subprocess.Popen(
            args,
            cwd=repo,
            env=env,
            stdout=(logs / f"{name}.log").open("w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for name, args in commands.items()
    }
    try:
        deadline = time.monotonic() + 300
        while not any(training_in(folder) for folder in workers.values()):
            assert time.monotonic() < deadline, "no training started on the cluster"
            assert procs["sweep"].poll() is None, "the sweep ended before any training"
            time.sleep(0.1)
        victim = next(name for name, folder in workers.items() if training_in(folder))
        busy = [name for name, folder in workers.items() if any(folder.glob("scratch/**/dl4cv-*"))]
        cluster.kill(victim)
        for proc in procs.values():
            proc.wait(timeout=600)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    out = {name: (logs / f"{name}.log").read_text() for name in procs}
    print(f"\nkilled {victim}\n" + "\n".join(out.values()))
    assert procs["sweep"].returncode == 0 and procs["seeds"].returncode == 0, out
    assert "Traceback" not in out["sweep"] + out["seeds"], out
    # Bad params fail once, with the stage's own line, and are not retried.
    assert procs["bad"].returncode == 1, out["bad"]
    assert out["bad"].count(" FAILED after ") == 1, out["bad"]
    assert "learning_rate" in out["bad"] and "expected" in out["bad"], out["bad"]
    # No credential in what the caller printed, the workers logged, or what was pushed.
    worker_logs = "".join(p.read_text() for p in cluster.root.glob("*.log"))
    history = run(["git", "log", "-p", "--all"], repo, env).stdout
    for text in (*out.values(), worker_logs, history):
        assert str(sshd.key) not in text and "IdentityFile" not in text

    # Once in the Git remote each, and in `dvc exp show` of a fresh clone after `dvc exp pull`.
    refs = run(["git", "ls-remote", str(tmp_path / "origin.git"), "refs/exps/*"], repo, env)
    names = sorted(line.rsplit("/", 1)[1] for line in refs.stdout.splitlines())
    assert len(names) == 3 and "seed-43" in names, names
    clone = tmp_path / "fresh"
    run(
        ["git", "clone", "-q", "-b", "main", str(tmp_path / "origin.git"), str(clone)],
        tmp_path,
        env,
    )
    point_at_remote(clone, sshd, env)
    run(["dvc", "exp", "pull", "origin", *names], clone, env)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], clone, env).stdout)
    found = {
        exp["name"]: exp["data"]
        for baseline in shown
        for exp in (baseline.get("experiments") or [])
        for exp in exp["revs"]
    }
    assert sorted(found) == names
    rates = {
        name: data["params"]["params.yaml"]["data"]["experiments"][EXP]["optimizer"]
        for name, data in found.items()
    }
    assert sorted(r["learning_rate"] for n, r in rates.items() if n != "seed-43") == [0.02, 0.1]

    # One FINISHED MLflow run per experiment with its params; the killed attempt's FAILED.
    client = MlflowClient(tracking_server.url)
    experiment = client.get_experiment_by_name("dl4cv")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`dl4cv.cluster_task` != ''"
    )
    finished = {}
    for found_run in runs:
        task = found_run.data.tags["dl4cv.cluster_task"]
        assert found_run.info.status != "RUNNING", task
        if found_run.info.status == "FINISHED":
            assert task not in finished, f"{task} finished twice"
            finished[task] = found_run
    assert sorted(finished) == names
    assert finished["seed-43"].data.tags["dl4cv.seed"] == "43"
    for found_run in finished.values():  # trained, then evaluated, wherever it ran
        assert found_run.data.metrics["test_accuracy"] > 0.5
    rates = [
        r.data.params["optimizer.learning_rate"] for n, r in finished.items() if n != "seed-43"
    ]
    assert sorted(rates) == ["0.02", "0.1"]
    assert any(r.info.status == "FAILED" for r in runs), "the killed attempt's run"
    assert sorted(busy) == ["w1", "w2"], "both workers had a task when one was killed"


@pytest.mark.parametrize("fault", ["scheduler", "not pushed", "no DVC remote"])
def test_bad_input_is_one_line_exit_1_and_nothing_submitted(tmp_path, fault):
    env = user_env()
    repo = caller_repo(tmp_path, env, None if fault == "no DVC remote" else str(tmp_path / "st"))
    if fault == "not pushed":
        (repo / "params.yaml").write_text((repo / "params.yaml").read_text() + "\n")
        run(["git", "add", "-A"], repo, env)
        run([*COMMIT, "local only"], repo, env)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "dl4cv.cluster", "--scheduler", f"tcp://127.0.0.1:{free_port()}",
         "-S", f"{LR}=0.02"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    expected = {
        "scheduler": "no Dask scheduler answers",
        "not pushed": "is not on the Git remote 'origin': git push it first",
        "no DVC remote": "no default DVC remote",
    }[fault]
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
    assert "submitted" not in done.stdout
    assert time.monotonic() - started < 20


def test_the_sweep_is_dvcs_grid_with_names_from_the_settings():
    from dl4cv.cluster.sweep import SweepError, grid

    exps = grid([f"{LR}=0.01,0.02", "mlflow.register=[a,b]", "seed=1,2"])
    assert [e.overrides for e in exps] == [
        (f"{LR}=0.01", "mlflow.register=[a,b]", "seed=1"),
        (f"{LR}=0.01", "mlflow.register=[a,b]", "seed=2"),
        (f"{LR}=0.02", "mlflow.register=[a,b]", "seed=1"),
        (f"{LR}=0.02", "mlflow.register=[a,b]", "seed=2"),
    ]  # a bracketed list is one value, as in dvc exp run -S
    names = [e.name for e in exps]
    assert len(set(names)) == 4 and all(n.startswith("sweep-") for n in names)
    assert names == [e.name for e in grid([f"{LR}=0.01,0.02", "mlflow.register=[a,b]", "seed=1,2"])]
    with pytest.raises(SweepError, match="expected KEY=VALUE"):
        grid(["no equals sign"])

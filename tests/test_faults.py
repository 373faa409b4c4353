"""Faults a team meets, each against real processes: the MLflow server killed mid-training, a
full disk while a checkpoint is written, the DVC remote's sshd stopped, a DVC queue worker
killed mid-training. Each ends in a result or one clear line, and nothing computed is lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.dvc_repo import (
    digits_params,
    free_port,
    make_repo,
    processes_in,
    run,
    stages_of,
    user_env,
)
from tests.test_team import point_at_remote, sshd  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration

EXP = "shallownet_digits"
SERVER_TIMEOUT_S = 120  # an mlflow server on sqlite answers in 5 to 25 s on 2 busy cores
STAGES = ("download", "preprocess", "split", "train", "evaluate")


def unavailable(reason: str) -> None:
    """Skip on a developer's machine; in CI a missing part is a broken setup, not a skip."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must have it (.ci/run)", pytrace=False)
    pytest.skip(reason)


def shallownet(epochs: int, batch_size: int) -> dict:
    return {
        EXP: {
            "chapter": 12,
            "dataset": "digits",
            "model": {"name": "shallownet"},
            "optimizer": {"name": "sgd", "learning_rate": 0.05},
            # Saved after every epoch: the faults strike between two saved epochs.
            "train": {"batch_size": batch_size, "epochs": epochs, "checkpoint_interval_s": 0},
        }
    }


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.05)


# --- the tracking server dies mid-training ---------------------------------------------------


@dataclass
class MlflowServer:
    root: Path  # its sqlite database and artifacts survive a restart
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MlflowServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        with (self.root / "server.log").open("a") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "mlflow", "server",
                    "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
                    "--artifacts-destination", str(self.root / "artifacts"),
                    "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                ],
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # killed as a group: its uvicorn worker too
            )  # fmt: skip
        return self

    def healthy(self) -> bool:
        assert self.process is not None and self.process.poll() is None, (
            self.root / "server.log"
        ).read_text()[-4000:]
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    root = tmp_path / "server"
    root.mkdir()
    server = MlflowServer(root, free_port()).start()
    try:
        yield server
    finally:
        server.kill()


def test_a_tracking_server_killed_mid_training_costs_the_training_nothing(tmp_path, mlflow_server):
    """The server is SIGKILLed at epoch 2 of 14: the training runs on at full speed, train and
    evaluate end with exit 0 and their outputs, one WARNING line each; after a restart, `sync`
    sends the records into the one run the training opened, and a second `sync` adds nothing."""
    epochs = 14
    root = make_repo(tmp_path / "repo", digits_params(shallownet(epochs, 4)), stages_of(*STAGES))
    env = user_env(MLFLOW_TRACKING_URI=mlflow_server.url)
    run(["dvc", "repro", "split@digits"], root, env)  # while the server starts
    wait_for(mlflow_server.healthy, SERVER_TIMEOUT_S, "mlflow server")

    state_file = root / "models" / EXP / "last" / "state.json"
    with (tmp_path / "repro.log").open("w") as out:
        proc = subprocess.Popen(
            ["dvc", "repro", f"evaluate@{EXP}"], cwd=root, env=env, stdout=out, stderr=out
        )
    try:
        wait_for(
            lambda: state_file.exists() and read_json(state_file)["completed"] >= 2,
            300,
            "two epochs",
        )
        killed_at = read_json(state_file)["completed"]
        mlflow_server.kill()
        killed = time.monotonic()
        assert proc.wait(timeout=300) == 0, (tmp_path / "repro.log").read_text()[-4000:]
        after_kill = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "repro.log").read_text()
    assert killed_at < epochs, "the training ended before the server was killed"

    # One line per stage that could not send, naming the run and the command; no urllib3
    # retries, no traceback. The outputs are all there.
    warnings = [line for line in log.splitlines() if "not sent to" in line]
    assert len(warnings) == 2, log
    assert all(EXP in w and "python -m dl4cv.tracking sync" in w for w in warnings), warnings
    assert "Retrying" not in log and "Traceback" not in log, log
    history = read_json(root / "models" / EXP / "model" / "history.json")
    assert len(history["val_accuracy"]) == epochs
    # No epoch waited on the dead server (MLflow's default: 7 retries with backoff, minutes).
    assert max(history["epoch_seconds"][killed_at:]) < 5, history["epoch_seconds"]
    seconds_left = sum(history["epoch_seconds"][killed_at:])
    assert after_kill < seconds_left + 60, (after_kill, seconds_left)
    metrics = read_json(root / "reports" / "experiments" / EXP / "metrics.json")
    assert metrics["accuracy"] > 0.8  # it learned, server or not

    print(f"\nserver killed at epoch {killed_at}; stages ended {after_kill:.1f} s later:")
    print("\n".join(warnings))
    pending = run([sys.executable, "-m", "dl4cv.tracking", "pending"], root, env).stdout
    assert len(pending.splitlines()) == 2, pending

    mlflow_server.start()
    wait_for(mlflow_server.healthy, SERVER_TIMEOUT_S, "mlflow server, restarted")
    sent = run([sys.executable, "-m", "dl4cv.tracking", "sync"], root, env).stdout
    assert sent.count("sent ") == 2, sent

    client = MlflowClient(mlflow_server.url)
    experiment = client.get_experiment_by_name("dl4cv")

    def the_run():
        (found,) = client.search_runs([experiment.experiment_id])
        return found

    synced = the_run()
    assert synced.info.run_name == EXP and synced.info.status == "FINISHED"
    assert synced.info.run_id == read_json(root / "models" / EXP / "model" / "run.json")["run_id"]
    curve = client.get_metric_history(synced.info.run_id, "val_accuracy")
    assert sorted(m.step for m in curve) == list(range(1, epochs + 1))
    assert [m.value for m in sorted(curve, key=lambda m: m.step)] == pytest.approx(
        history["val_accuracy"]
    )
    assert synced.data.metrics["test_accuracy"] == pytest.approx(metrics["accuracy"])
    (model,) = synced.outputs.model_outputs
    assert client.get_logged_model(model.model_id).name == "model"
    files = [a.path for a in client.list_artifacts(synced.info.run_id, "report")]
    assert "report/metrics.json" in files

    again = run([sys.executable, "-m", "dl4cv.tracking", "sync"], root, env).stdout
    assert "nothing to send" in again
    assert the_run().info.run_id == synced.info.run_id
    assert len(client.get_metric_history(synced.info.run_id, "val_accuracy")) == epochs
    assert not list((root / "mlflow-journal").iterdir())


# --- the disk fills while a checkpoint is written --------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[callable]:
    """Mount a tmpfs of a given size at a folder (root only); unmounted afterwards."""
    if os.geteuid() != 0:
        unavailable("mounting a tmpfs needs root")
    mounted: list[Path] = []

    def mount(folder: Path, size: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            unavailable(f"mount -t tmpfs failed: {done.stderr.strip()}")
        mounted.append(folder)

    try:
        yield mount
    finally:
        for folder in mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_during_a_checkpoint_loses_nothing(tmp_path, tmpfs):
    """models/<exp>/last on a tmpfs with room for one epoch's checkpoints: the training stops
    with one line naming the file, the checkpoint before it intact; with room again,
    `dvc repro` resumes from it and ends where an uninterrupted training ends (CPU)."""
    epochs = 5
    params, stages = digits_params(shallownet(epochs, 32)), stages_of(*STAGES[:4])
    env = user_env()
    reference = make_repo(tmp_path / "reference", params, stages)
    run(["dvc", "repro", f"train@{EXP}"], reference, env)
    last = reference / "models" / EXP / "last"
    checkpoint = max(p.stat().st_size for p in last.glob("*.keras"))

    root = make_repo(tmp_path / "repo", params, stages)
    run(["dvc", "repro", "split@digits"], root, env)
    folder = root / "models" / EXP / "last"
    # Epoch 1 leaves two full models there (the resume state and the best one); epoch 2
    # improves and writes a third before the first two go.
    tmpfs(folder, int(checkpoint * 2.5) // 4096 * 4096)
    failed = subprocess.run(
        ["dvc", "repro", f"train@{EXP}"], cwd=root, env=env, capture_output=True, text=True
    )
    out = failed.stdout + failed.stderr
    assert failed.returncode != 0, out
    errors = [line for line in out.splitlines() if "no space left" in line]
    assert len(errors) == 1 and f"models/{EXP}/last/" in errors[0], out
    assert "Traceback" not in out, out
    print("\n" + errors[0])
    state = read_json(folder / "state.json")
    assert 1 <= state["completed"] < epochs
    assert (folder / state["model_file"]).stat().st_size > 0
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no half file

    subprocess.run(["mount", "-o", "remount,size=64m", str(folder)], check=True)
    resumed = run(["dvc", "repro", f"train@{EXP}"], root, env)
    assert f"resuming from epoch {state['completed']}" in resumed.stdout + resumed.stderr
    ours = read_json(root / "models" / EXP / "model" / "history.json")
    theirs = read_json(reference / "models" / EXP / "model" / "history.json")
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert ours[key] == theirs[key], key


# --- a DVC queue worker is killed mid-training -----------------------------------------------


def test_an_experiment_whose_queue_worker_was_killed_resumes(tmp_path):
    """`dvc queue start` trains in a temporary copy of the repository; SIGKILL the worker and
    everything it started at epoch 3 or later (the copy and its resume state are lost with
    it): `dvc exp run` of the same params resumes from the last epoch the worker saved, and
    the MLflow run the worker opened ends FINISHED, the only one."""
    epochs = 16
    root = make_repo(tmp_path / "repo", digits_params(shallownet(epochs, 4)), stages_of(*STAGES))
    env = user_env()
    run(["dvc", "repro", "split@digits"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "data"], root, env)
    run(["dvc", "exp", "run", "--queue", "-n", "victim"], root, env)
    # Not through pipes: the worker it leaves behind would hold them open until it ends.
    subprocess.run(
        ["dvc", "queue", "start", "-j", "1"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=120,
    )

    def saved() -> int:
        states = list((root / ".cache" / "resume").glob("*/state.json"))
        return read_json(states[0])["completed"] if states else 0

    try:
        wait_for(lambda: saved() >= 3, 300, "three epochs in the queue")
    finally:
        workers = processes_in(root, below=True)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    at_kill = saved()
    assert any("train.py" in cmd for cmd in workers.values()), workers
    assert at_kill < epochs, "the training ended before the worker was killed"
    wait_for(lambda: not processes_in(root, below=True), 20, "the killed processes gone")

    rerun = run(["dvc", "exp", "run", "-n", "rerun"], root, env)
    out = rerun.stdout + rerun.stderr
    resumed = re.search(r"resuming from epoch (\d+) of", out)
    assert resumed and int(resumed.group(1)) >= at_kill, out  # at most one save lost
    history = read_json(root / "models" / EXP / "model" / "history.json")
    assert len(history["val_accuracy"]) == epochs
    assert history["val_accuracy"][-1] > 0.8
    assert not list((root / ".cache" / "resume").iterdir())  # trained: the spare is gone

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dl4cv")
    (trained,) = client.search_runs([experiment.experiment_id])
    assert trained.info.status == "FINISHED"
    assert int(trained.data.tags["resumed_from_epoch"]) == int(resumed.group(1))
    steps = {m.step for m in client.get_metric_history(trained.info.run_id, "val_accuracy")}
    assert steps == set(range(1, epochs + 1))


# --- the DVC remote is gone ------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, int]:
    """Every file of the workspace (not .git, not DVC's own folder) and its size."""
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and not {".git", ".dvc"} & set(p.relative_to(root).parts)
    }


def test_a_dvc_remote_that_is_gone_fails_in_one_line_and_changes_nothing(tmp_path, sshd):  # noqa: F811
    """The team's sshd stopped: `dvc push`, `dvc pull` and `dvc repro --pull --allow-missing`,
    as the README's team section runs them, end with DVC's ERROR line naming the refused
    connection (two for a pull), no traceback, a failing exit status, the workspace as it was."""
    env = user_env(HOME=str(sshd.home), USER=os.environ.get("USER", "root"))
    one = make_repo(tmp_path / "one", digits_params({}), stages_of(*STAGES[:3]))
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", str(origin)], tmp_path, env)
    run(["dvc", "remote", "add", "-d", "team", f"ssh://127.0.0.1:{sshd.port}{tmp_path / 'store'}"],
        one, env)  # fmt: skip
    point_at_remote(one, sshd, env)
    run(["dvc", "repro"], one, env)
    run(["git", "add", "-A"], one, env)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"], one, env)
    run(["git", "push", "-q", str(origin), "HEAD:main"], one, env)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", "-b", "main", str(origin), str(clone)], tmp_path, env)
    point_at_remote(clone, sshd, env)

    sshd.process.terminate()
    sshd.process.wait(timeout=10)
    for folder, args in (
        (one, ["dvc", "push"]),
        (clone, ["dvc", "pull"]),
        (clone, ["dvc", "repro", "--pull", "--allow-missing"]),
    ):
        before = snapshot(folder)
        started = time.monotonic()
        done = subprocess.run(
            args, cwd=folder, env=env, capture_output=True, text=True, timeout=120
        )
        seconds = time.monotonic() - started
        out = done.stdout + done.stderr
        errors = [line for line in out.splitlines() if line.startswith("ERROR")]
        print(
            f"\n{' '.join(args)}: exit {done.returncode} in {seconds:.1f} s\n" + "\n".join(errors)
        )
        assert done.returncode != 0, out
        assert 1 <= len(errors) <= 2 and "Connect call failed" in errors[0], out
        assert "Traceback" not in out, out
        assert snapshot(folder) == before, args
        assert seconds < 30, args

"""A training killed mid-run by killing `dvc repro`'s process group resumes with `dvc repro`.

Its own small repository (one bundled dataset, one Keras experiment, dvc.yaml's stages up to
train as they are), so pytest-xdist runs it beside the end-to-end test. The warm start is on:
the training runs in a worker forked by the server, outside the killed process group, and must
die with the stage process all the same.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import yaml

from tests.conftest import REPO
from tests.dvc_repo import (
    make_repo,
    processes_in,
    real_params,
    run,
    stop_warm,
    warm_command,
    warm_env,
)

pytestmark = pytest.mark.integration

EXP = "shallownet_digits"
EPOCHS = 40
STAGES = ("download", "preprocess", "split", "train")


def small_params() -> dict:
    real = real_params()
    return {
        "profile": "book",
        "seed": real["seed"],
        "preprocess": real["preprocess"],
        "datasets": {"digits": real["datasets"]["digits"]},
        "experiments": {
            EXP: {
                "chapter": 12,
                "dataset": "digits",
                "model": {"name": "shallownet"},
                "optimizer": {"name": "sgd", "learning_rate": 0.05},
                # Saved after every epoch: the test kills between two saved epochs.
                "train": {"batch_size": 32, "epochs": EPOCHS, "checkpoint_interval_s": 0},
            }
        },
    }


def small_dvc_yaml() -> dict:
    """dvc.yaml's own download, preprocess, split and train stages, nothing else."""
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    return {"stages": {name: pipeline["stages"][name] for name in STAGES}}


@pytest.fixture
def repo(tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir()
    env = warm_env(runtime)
    root = make_repo(tmp_path / "repo", small_params(), small_dvc_yaml())
    try:
        yield root, env
    finally:
        stop_warm(runtime, env)


def wait_for_server(env: dict[str, str]) -> None:
    deadline = time.monotonic() + 120
    while warm_command("status", env).returncode != 0:
        assert time.monotonic() < deadline, "the warm server never came up"
        time.sleep(0.2)


def test_killed_training_resumes_with_the_same_epoch_count_and_run(repo):
    root, env = repo
    run(["dvc", "repro", "split@digits"], root, env)  # its first stage starts the warm server
    wait_for_server(env)

    state_file = root / "models" / EXP / "last" / "state.json"
    proc = subprocess.Popen(
        ["dvc", "repro", f"train@{EXP}"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: dvc and the stage process
    )
    state = None
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if state_file.exists():
                state = json.loads(state_file.read_text())
                if state["epochs"] == EPOCHS and state["completed"] >= 2:
                    workers = {
                        pid: cmd for pid, cmd in processes_in(root).items() if "warmstart" in cmd
                    }
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert state is not None and 2 <= state["completed"] < EPOCHS, "training was not interrupted"
    assert workers, "the training did not run in a warm worker"

    # The worker was not in the killed group; it dies with its stage process, and nothing else
    # is left working in the repository either.
    deadline = time.monotonic() + 20
    while (left := processes_in(root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"still running after the kill: {left}"

    run(["dvc", "repro", f"train@{EXP}"], root, env)
    history = json.loads((root / "models" / EXP / "model" / "history.json").read_text())
    assert len(history["loss"]) == EPOCHS
    info = json.loads((root / "models" / EXP / "model" / "run.json").read_text())
    assert info["run_id"] == state["run_id"]  # the killed training's MLflow run, continued

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("dl4cv").experiment_id])
    assert [r.info.run_id for r in runs] == [state["run_id"]]  # one run, not a second one
    run_ = runs[0]
    assert int(run_.data.tags["resumed_from_epoch"]) >= state["completed"]
    steps = [m.step for m in client.get_metric_history(run_.info.run_id, "loss")]
    assert sorted(set(steps)) == list(range(1, EPOCHS + 1))
    assert run_.data.metrics["val_accuracy"] > 0.8  # ten digits: it learned, across the kill
    assert "Data and pipelines are up to date" in run(["dvc", "repro"], root, env).stdout

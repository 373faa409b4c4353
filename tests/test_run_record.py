"""The run record every stage opens (dl4cv.tracking.run_record), against a real sqlite MLflow
store: the standard tags, DVC's experiment variables, the dataset as a run input, the
experiment's kind."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from dl4cv import tracking
from dl4cv.config import SplitSpec, Subset, parse_params
from dl4cv.data.sources import Fetched
from dl4cv.data.splits import make_split
from dl4cv.runtime.fileio import write_json
from dl4cv.runtime.paths import raw_dir, split_file
from dl4cv.tracking import run_record
from tests.conftest import REPO, migrated_store, toy_params
from tests.dvc_repo import make_repo

PARAMS = parse_params(toy_params({}) | {"seed": 7})
SHA = "ab" * 32
URL = "https://example.org/toy.zip"


@pytest.fixture
def client(in_tmp: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    for var in run_record.ENV_TAGS:
        monkeypatch.delenv(var, raising=False)
    return MlflowClient(mlflow_store)


def write_dataset() -> None:
    """What download and split leave of `toy`: its descriptor and 12 labels split 9/3."""
    Fetched("toy", "toy.zip", SHA, "official", URL, {"format": "image-folder-zip"}).write(
        _mkdir(raw_dir("toy"))
    )
    labels = np.arange(12) % 3
    spec = SplitSpec("stratified", 0.25, random_state=1)
    split = make_split(labels, [""] * 12, spec)
    write_json(split_file("toy"), split.to_json("toy", spec, Subset(), labels, ["a", "b", "c"]))


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_standard_tags_and_the_dataset_input(client, monkeypatch):
    write_dataset()
    monkeypatch.setenv("DVC_EXP_NAME", "wiser-bats")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "f" * 40)
    monkeypatch.setenv("DVC_STAGE", "train@toy_net")
    with run_record.record("train", "toy_net", PARAMS, dataset="toy", tags={"x": "1"}) as active:
        pass
    run = client.get_run(active.run_id)
    tags = run.data.tags
    assert {k: tags[k] for k in tags if not k.startswith("mlflow.")} == {
        "dl4cv.experiment": "toy_net",
        "dl4cv.stage": "train",
        "dl4cv.profile": "book",
        "dl4cv.seed": "7",
        "dl4cv.source": "pipeline",  # what the seeds' spread counts (seed_runs)
        "git_commit": "unknown",  # not a git repository
        "dataset": "toy",
        "dataset.sha256": SHA,
        "dataset.origin": "official",
        "dvc.exp_name": "wiser-bats",
        "dvc.baseline_rev": "f" * 40,
        "dvc.stage": "train@toy_net",
        "x": "1",
        "dl4cv.record": active.record,  # the journal key a resumed stage finds its run by
    }
    assert tags["mlflow.source.git.commit"] == "unknown"
    (used,) = run.inputs.dataset_inputs
    assert used.dataset.name == "toy"
    assert used.dataset.digest == SHA[:36]
    assert json.loads(used.dataset.source) == {"url": URL}
    assert json.loads(used.dataset.profile) == {"train": 9, "val": 0, "test": 3}
    input_tags = {t.key: t.value for t in used.tags}
    assert input_tags["mlflow.data.context"] == "training"
    assert input_tags["sha256"] == SHA


def test_a_reopened_run_keeps_the_tags_of_the_stage_that_opened_it(client, monkeypatch):
    write_dataset()
    with run_record.record("train", "toy_net", PARAMS, dataset="toy") as active:
        run_id = active.run_id
    monkeypatch.setenv("DVC_EXP_NAME", "later-exp")
    with run_record.record("evaluate", "toy_net", PARAMS, run_id=run_id, tags={"y": "2"}):
        pass
    run = client.get_run(run_id)
    assert run.data.tags["dl4cv.stage"] == "train"
    assert run.data.tags["dvc.exp_name"] == "later-exp"  # lacking, so added
    assert run.data.tags["y"] == "2"
    assert len(run.inputs.dataset_inputs) == 1


def test_a_stage_without_a_dataset_logs_no_input(client):
    with run_record.record("report", "book-report", PARAMS) as active:
        pass
    run = client.get_run(active.run_id)
    assert "dataset" not in run.data.tags and "dvc.exp_name" not in run.data.tags
    assert run.inputs.dataset_inputs == []


def test_the_experiment_opens_on_its_runs(client):
    """MLflow 3's UI shows runs, not the GenAI overview, for this experiment kind; an
    experiment made before the tag existed gets it too."""
    client.create_experiment(tracking.EXPERIMENT_NAME)
    with run_record.record("report", "book-report", PARAMS):
        pass
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT_NAME)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_dvc_exp_run_names_the_run(tmp_path, tmp_path_factory):
    """A real `dvc exp run -n`: the stage's run carries the experiment name `dvc exp show`
    lists and the commit it is based on."""
    stage = {"cmd": "python stages/report.py", "deps": ["book/figures.yaml"], "params": ["profile"]}
    stage["outs"] = [{"reports/book.md": {"cache": False}}]
    root = make_repo(tmp_path / "repo", toy_params({}), {"stages": {"report": stage}})
    shutil.copyfile(migrated_store(tmp_path_factory), root / "mlflow.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env |= {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"}
    env |= {"DL4CV_WARM": "0", "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        ["dvc", "exp", "run", "-n", "first-try"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT_NAME)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags["dvc.exp_name"] == "first-try"
    assert run.data.tags["dvc.baseline_rev"] == head
    assert run.data.tags["dvc.stage"] == "report"
    assert re.fullmatch(r"[0-9a-f]{40}", run.data.tags["git_commit"])
    shown = subprocess.run(
        ["dvc", "exp", "show", "--json"], cwd=root, env=env, capture_output=True, text=True
    )
    assert "first-try" in shown.stdout

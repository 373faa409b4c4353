"""A fresh clone without the book's Animals, end to end with real DVC in a temporary git repo.

`dvc exp run -S profile=quick` ends with exit 0: digits run, every stage that needs Animals
waits (a WARNING line, a record, the book report's "not run" section). Then a folder of real
images becomes a mirror with `python -m dl4cv.mirror add`, the command it prints is run, and
DVC reruns exactly the stages that waited.

The project is trimmed to the Animals part of the DAG: the datasets animals and digits, a
k-NN and ShallowNet on Animals (the latter reloaded by predict@shallownet_load), a k-NN on
digits, every exercise group, and the report; captcha, smiles, ImageNet stages are left out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
import yaml

from dl4cv.data.waiting import STATUS, fix_for
from tests.conftest import REPO, separable
from tests.dvc_repo import PROJECT_FILES
from tests.dvc_repo import run as _run

pytestmark = pytest.mark.integration

KEPT_STAGES = (
    "download",
    "preprocess",
    "split",
    "train",
    "evaluate",
    "exercises",
    "exercises_animals",
    "exercises_digits",
    "predict",
    "report",
)
ANIMAL_RECORDS = (
    "knn_animals",
    "shallownet_animals",
    "linear_scoring",
    "regularization_none",
    "regularization_l1",
    "regularization_l2",
    "shallownet_load",
)
WAITED = {
    "download@animals",
    "preprocess@animals",
    "split@animals",
    "train@knn_animals",
    "evaluate@knn_animals",
    "train@shallownet_animals",
    "evaluate@shallownet_animals",
    "exercises_animals",
    "predict@shallownet_load",
    "report",
}
CLASSES = ("cats", "dogs", "panda")
RUNNING = re.compile(r"Running stage '([^']+)'")


def small_project(repo: Path) -> None:
    """The project files, with params.yaml and dvc.yaml trimmed to the Animals part."""
    for name in [*PROJECT_FILES, ".dvcignore"]:
        src, dst = REPO / name, repo / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, dst)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section in ("captcha", "detect", "imagenet"):
        del params[section]
    params["datasets"] = {name: params["datasets"][name] for name in ("animals", "digits")}
    experiments = params["experiments"]
    params["experiments"] = {
        "knn_animals": experiments["knn_animals"],
        "shallownet_animals": experiments["shallownet_animals"]
        | {"quick": {"train": {"epochs": 2}}},
        "knn_digits": {"chapter": 7, "dataset": "digits", "model": {"name": "knn"}},
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    pipeline["stages"] = {k: v for k, v in pipeline["stages"].items() if k in KEPT_STAGES}
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))


def book_folder(root: Path, per_class: int = 12) -> Path:
    """The book's layout: animals/<class>/<class>_NNNNN.jpg, real JPEGs written by OpenCV."""
    for label, name in enumerate(CLASSES):
        (root / "animals" / name).mkdir(parents=True)
        for i in range(per_class):
            image = separable(label, 48, seed=100 * label + i)
            assert cv2.imwrite(str(root / "animals" / name / f"{name}_{i + 1:05d}.jpg"), image)
    return root / "animals"


def stages_run(result: subprocess.CompletedProcess) -> set[str]:
    return set(RUNNING.findall(result.stdout + result.stderr))


def record(repo: Path, exp_id: str) -> dict:
    return json.loads((repo / "reports" / "experiments" / exp_id / "metrics.json").read_text())


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str], str]]:
    """A clone with internet but no Animals after `dvc exp run -S profile=quick`."""
    base = tmp_path_factory.mktemp("waiting")
    repo = base / "repo"
    small_project(repo)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DL4CV_"))}
    env["DL4CV_WARM_IDLE"] = "60"  # the warm start: TensorFlow and MLflow imported once
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for args in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
    ):
        _run(args, repo, env)
    try:
        result = _run(["dvc", "exp", "run", "-S", "profile=quick"], repo, env)
        yield repo, env, result.stdout + result.stderr
    finally:
        subprocess.run([sys.executable, "-m", "dl4cv.runtime.warmstart", "stop"], cwd=repo, env=env)


def test_a_clone_without_animals_runs_the_rest_and_waits(fresh):
    repo, _, log = fresh
    raw = repo / "data" / "raw" / "animals"
    assert [p.name for p in raw.iterdir()] == ["dataset.json"]
    assert json.loads((raw / "dataset.json").read_text())["waiting"] == fix_for("animals")
    # One WARNING line per waiting stage instance (and per exercise of the animals group).
    warned = re.findall(r"\[(\w+)\] WARNING (\w+): waiting for data", log)
    assert sorted(warned) == sorted(
        [("download", "animals"), ("preprocess", "animals"), ("split", "animals")]
        + [(stage, exp) for stage in ("train", "evaluate") for exp in ANIMAL_RECORDS[:2]]
        + [("exercise", exercise) for exercise in ANIMAL_RECORDS[2:6]]
        + [("predict", "shallownet_load")]
    )
    for exp_id in ANIMAL_RECORDS:
        metrics = record(repo, exp_id)
        assert metrics["status"] == STATUS and metrics["waiting"] == fix_for("animals")
        if exp_id != "shallownet_load":  # predict writes predictions.png and .csv instead
            report = (repo / "reports" / "experiments" / exp_id / "report.txt").read_text()
            assert f"animals: {STATUS}; to provide it: {fix_for('animals')}" in report, exp_id
    predict = repo / "reports" / "experiments" / "shallownet_load"
    assert cv2.imread(str(predict / "predictions.png")) is not None
    assert (predict / "predictions.csv").read_text() == "id,true,predicted,probability\n"
    for exp_id in ("knn_digits", "nn_digits", "perceptron_xor"):  # the data that can be had
        assert "status" not in record(repo, exp_id) and record(repo, exp_id)["profile"] == "quick"
    book = json.loads((repo / "reports" / "book.json").read_text())
    verdicts = {row["id"]: row["verdict"] for row in book["experiments"]}
    assert {exp_id for exp_id, v in verdicts.items() if v == STATUS} == set(ANIMAL_RECORDS)
    assert {row["id"] for row in book["not_run"]} == set(ANIMAL_RECORDS)
    markdown = (repo / "reports" / "book.md").read_text()
    section = markdown.split("## Not run: data missing", 1)[1].split("## Results")[0]
    for exp_id in ANIMAL_RECORDS:
        assert f"| {exp_id} | animals | `{fix_for('animals')}` |" in section


def test_providing_animals_reruns_exactly_what_waited(fresh):
    repo, env, _ = fresh
    folder = book_folder(repo.parent / "book")
    added = _run([sys.executable, "-m", "dl4cv.mirror", "add", "animals", str(folder)], repo, env)
    command = next(line.split() for line in added.stdout.splitlines() if "dvc exp run" in line)
    assert command == ["dvc", "exp", "run", "-S", "datasets.animals.source.mirror=mirror"]
    assert _run(["git", "status", "--porcelain", "mirror"], repo, env).stdout == ""  # ignored

    result = _run(command, repo, env)
    assert stages_run(result) == WAITED
    fetched = json.loads((repo / "data" / "raw" / "animals" / "dataset.json").read_text())
    assert fetched["origin"] == "mirror" and "waiting" not in fetched
    for exp_id in ANIMAL_RECORDS:
        assert "status" not in record(repo, exp_id), exp_id
    assert record(repo, "knn_animals")["support"] == 9  # 36 images, 25 % tested
    assert json.loads((repo / "reports" / "book.json").read_text())["not_run"] == []
    assert "Not run" not in (repo / "reports" / "book.md").read_text()
    assert stages_run(_run(["dvc", "repro"], repo, env)) == set()

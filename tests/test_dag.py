"""The real dvc.yaml against the real params.yaml: every item resolves into a valid stage, and
each stage depends on the files it reads (static checks: nothing runs)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dl4cv.config import EXERCISE_DATASET, load_params
from tests.conftest import REPO

DVC = str(Path(sys.executable).with_name("dvc"))


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's pipeline files in a new git repository, as a clone has them."""
    root = tmp_path_factory.mktemp("dag")
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / ".dvc", root / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def dvc(root: Path, *args: str) -> str:
    result = subprocess.run([DVC, *args], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_params_item_is_a_stage(copy: Path) -> None:
    stages = {line.split()[0] for line in dvc(copy, "stage", "list").splitlines()}
    params = load_params(REPO / "params.yaml")
    for foreach, items in (
        ("download", params.datasets),
        ("preprocess", params.datasets),
        ("split", params.datasets),
        ("train", params.experiments),
        ("evaluate", params.experiments),
        ("predict", params.predictions),
    ):
        assert {f"{foreach}@{key}" for key in items} <= stages
    assert {"exercises", "exercises_animals", "exercises_digits", "report"} <= stages


def test_dvc_status_resolves_every_stage(copy: Path) -> None:
    """`dvc status` interpolates every foreach item and reads every params key it names."""
    out = dvc(copy, "status")
    assert "ERROR" not in out


def exercise_stages() -> dict[str, dict]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: stage for name, stage in stages.items() if name.startswith("exercises")}


def test_each_exercise_is_in_one_group_that_reads_its_data() -> None:
    params = load_params(REPO / "params.yaml")
    seen: dict[str, str] = {}
    for name, stage in exercise_stages().items():
        ids = re.fullmatch(r"python stages/exercise.py ([\w ]+)", stage["cmd"]).group(1).split()
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]]
        for exercise_id in ids:
            assert exercise_id not in seen, f"{exercise_id} in {seen.get(exercise_id)} and {name}"
            seen[exercise_id] = name
            assert f"exercises.{exercise_id}" in stage["params"]
            assert f"reports/experiments/{exercise_id}" in outs
            dataset = params.exercise(exercise_id).dataset
            reads = {f"data/processed/{dataset}.npz"} if dataset else set()
            if dataset and params.exercise(exercise_id).kind == "neural_network":
                reads.add(f"data/splits/{dataset}.json")  # it learns on the shared split
            data_deps = {d for d in stage["deps"] if d.startswith("data/")}
            assert reads <= data_deps, f"{name} must depend on what {exercise_id} reads"
        if not any(params.exercise(i).dataset for i in ids):
            assert not data_deps, f"{name} reads no dataset, so it waits for none"
    assert set(seen) == set(params.exercises)
    assert set(EXERCISE_DATASET) <= {params.exercise(i).kind for i in seen}


def test_no_stage_depends_on_a_whole_data_folder() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        for dep in body.get("deps", []):
            assert dep not in ("data", "data/raw", "data/processed", "data/splits"), (name, dep)


def test_bytecode_beside_the_code_is_no_dependency(tmp_path: Path) -> None:
    """Python writes __pycache__/*.pyc beside a module on import (unless told not to); a stage
    that depends on a folder of modules (src/dl4cv/preprocessing) would otherwise rerun, and
    everything after it, whenever they appear or change."""
    shutil.copy(REPO / ".dvcignore", tmp_path / ".dvcignore")
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "m.py").write_text("X = 1\n")
    stage = {"cmd": "python -c \"open('out.txt', 'w').write('1')\"", "deps": ["code"]}
    (tmp_path / "dvc.yaml").write_text(
        yaml.safe_dump({"stages": {"s": {**stage, "outs": ["out.txt"]}}})
    )
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc(tmp_path, "init", "-q")
    dvc(tmp_path, "repro", "-q")
    (tmp_path / "code" / "__pycache__").mkdir()
    (tmp_path / "code" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\x00" * 16)
    assert "up to date" in dvc(tmp_path, "status")
    (tmp_path / "code" / "m.py").write_text("X = 2\n")  # the code itself still counts
    assert "modified:" in dvc(tmp_path, "status")

"""A stage that trains nothing never loads Keras, TensorFlow or JAX: their import costs seconds
per process here, paid again by every `dvc repro` of that stage.

Each stage runs as `python stages/<stage>.py` does, in a fresh interpreter, on a toy project
that the stages before it built; the interpreter then says which of the three it imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from dl4cv.config import load_params
from dl4cv.data.sources import MIRROR_ENV, sha256sum
from dl4cv.pipeline import train
from tests.conftest import REPO, make_image_zip, migrated_store

HEAVY = ("tensorflow", "keras", "jax")
NETWORK = "shallownet_faces"  # trained here, in this process: its evaluate is under test
# The stage, its argument, and a file it writes (proof that it ran to the end), in DAG order.
STAGES = [
    ("download", "faces", "data/raw/faces/dataset.json"),
    ("preprocess", "faces", "data/processed/faces.npz"),
    ("split", "faces", "data/splits/faces.json"),
    ("evaluate", NETWORK, f"reports/experiments/{NETWORK}/metrics.json"),
    ("demo_video", None, "data/demo/faces.avi"),
    ("exercise", "perceptron_or", "reports/experiments/perceptron_or/metrics.json"),
    ("captcha_download", None, "data/raw/captcha/dataset.json"),
    ("annotate", None, "data/labels/captcha.csv"),
    ("captcha_preprocess", None, "data/processed/captcha.npz"),
    ("report", None, "reports/book.md"),
]
# Runs a stage script as its own __main__, then prints the heavy packages it left imported.
DRIVER = f"""
import runpy, sys
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
print(" ".join(sorted({{m.split(".")[0] for m in sys.modules}} & {set(HEAVY)!r})))
"""

PARAMS = {
    "profile": "book",
    "seed": 1,
    "preprocess": {},
    "datasets": {
        "faces": {
            "source": {"format": "image-folder-zip", "root": "faces"},
            "image": {"width": 16, "height": 16, "channels": 1},
            "split": {"method": "stratified", "test_size": 0.25, "random_state": 42},
        }
    },
    "experiments": {
        NETWORK: {
            "chapter": 22,
            "dataset": "faces",
            "model": {"name": "shallownet"},
            "optimizer": {"name": "sgd", "learning_rate": 0.05},
            "train": {"batch_size": 8, "epochs": 2},
            "evaluate": {"checkpoint": "best"},
        },
        "captcha_breaker": {"chapter": 21, "dataset": "captcha", "model": {"name": "lenet"}},
    },
    "captcha": {"source": {"count": 6, "seed": 3}},
    "exercises": {
        "perceptron_or": {
            "chapter": 10,
            "kind": "perceptron",
            "settings": {"table": "or", "alpha": 0.1, "epochs": 20},
        }
    },
    "detect": {"video": "data/demo/faces.avi", "demo": {"dataset": "faces", "faces": 4}},
}


@pytest.fixture(scope="module")
def heavy_imports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Run every stage of STAGES in a toy project; what each left imported of HEAVY."""
    root = tmp_path_factory.mktemp("stages")
    mirror = root.parent / f"{root.name}-mirror"
    mirror.mkdir()
    archive = make_image_zip(mirror / "faces.zip", "faces", 12, ["not_smiling", "smiling"])
    manifest = {"faces": {"file": archive.name, "sha256": sha256sum(archive)}}
    manifest["faces"]["format"] = "image-folder-zip"
    (mirror / "mirror.json").write_text(json.dumps(manifest))
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    (root / "book").mkdir()
    shutil.copyfile(REPO / "book" / "figures.yaml", root / "book" / "figures.yaml")
    shutil.copyfile(migrated_store(tmp_path_factory), root / "mlflow.db")
    env = {
        **os.environ,
        "DL4CV_WARM": "0",  # measured cold: a warm worker has everything preloaded
        "PYTHONPATH": str(REPO / "src"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        MIRROR_ENV: str(mirror),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    found = {}
    for stage, argument, writes in STAGES:
        if stage == "evaluate":  # the training it scores, in this process (Keras is allowed)
            with pytest.MonkeyPatch.context() as mp:
                mp.chdir(root)
                mp.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
                train.run(NETWORK, load_params())
        script = REPO / "stages" / f"{stage}.py"
        command = [sys.executable, "-c", DRIVER, str(script), *([argument] if argument else [])]
        done = subprocess.run(
            command, cwd=root, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{stage}:\n{done.stderr[-3000:]}"
        assert (root / writes).is_file(), f"{stage} did not write {writes}"
        found[stage] = done.stdout.splitlines()[-1].split() if done.stdout.strip() else []
    return found


@pytest.mark.parametrize("stage", [stage for stage, _, _ in STAGES])
def test_a_stage_that_trains_nothing_loads_no_keras(heavy_imports, stage):
    assert heavy_imports[stage] == [], f"stages/{stage}.py imported {heavy_imports[stage]}"

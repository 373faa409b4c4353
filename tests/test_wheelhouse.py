"""scripts/wheelhouse.py: which packages an offline server gets, read from this venv's real
installed metadata (the download itself needs PyPI and is exercised by bench/gpu_book.sh)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("wheelhouse", REPO / "scripts" / "wheelhouse.py")
wheelhouse = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wheelhouse)

SKIP = {"tensorflow", "tensorflow-cpu"}


def test_the_tree_holds_what_dl4cv_runs_on_and_no_tensorflow():
    found, asked = wheelhouse.closure("dl4cv", "3.12", SKIP)
    assert {"keras", "mlflow", "dvc", "numpy", "opencv-python-headless", "ruamel-yaml-clib"} <= set(
        found
    )
    # Only TensorFlow needs these: cut with it.
    assert not {"tensorflow-cpu", "tensorboard", "tensorflow-io-gcs-filesystem"} & set(found)
    assert found["keras"] is not None  # pinned to the installed version
    # dl4cv asks for dask[distributed]: the extra's own requirements come too
    assert {"dask", "distributed", "tornado", "zict", "tblib"} <= set(found)
    assert any(not spec.contains("5.0.0") for spec in asked["opencv-python-headless"])


def test_the_target_keeps_only_versions_dl4cv_accepts(tmp_path: Path):
    have = tmp_path / "have.txt"
    have.write_text("opencv-python-headless==5.0.0\nNumPy==2.5.2\nscikit_learn\n# comment\n")
    parsed = wheelhouse.read_have(have)
    assert parsed == {
        "opencv-python-headless": "5.0.0",
        "numpy": "2.5.2",
        "scikit-learn": None,
    }
    _, asked = wheelhouse.closure("dl4cv", "3.12", SKIP)
    kept = wheelhouse.usable(parsed, asked)
    assert kept == {"numpy", "scikit-learn"}  # OpenCV 5 has no Haar cascades: 4.x is packed


def test_bad_arguments_are_one_line(tmp_path: Path):
    script = REPO / "scripts" / "wheelhouse.py"
    for args, message in [
        (["--python", "twelve"], "--python: expected a version like 3.12"),
        (["--python", "3.12", "--have", str(tmp_path / "none.txt")], "none.txt: no such file"),
    ]:
        proc = subprocess.run(
            [sys.executable, str(script), *args, "--out", str(tmp_path / "w")],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 1
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "w").exists()

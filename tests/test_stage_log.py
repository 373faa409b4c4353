"""A stage's log holds what a person should read: no TensorFlow C++ lines that look like errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.test_train_stage import RAW_PARAMS, SHALLOW, write_project

# absl's C++ log format (severity, MMDD, time, thread, file:line]), and its first-line notice.
CPP_LOG = re.compile(r"^[IWEF]\d{4} |^WARNING: All log messages before absl::InitializeLog")


def run_stage(root: Path, *args: str) -> subprocess.CompletedProcess:
    """`python <args>` from `root`, as DVC runs a stage: a fresh process, our source first, and
    no TF_CPP_MIN_LOG_LEVEL from the test session (a newcomer's shell has none)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_training_stage_logs_no_tensorflow_cpp_lines(in_tmp: Path, mlflow_store: str):
    write_project(in_tmp)
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(RAW_PARAMS))

    done = run_stage(in_tmp, str(REPO / "stages" / "train.py"), SHALLOW)

    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if CPP_LOG.match(line)] == []
    assert f"[train] INFO {SHALLOW}: trained" in done.stderr  # our own log still shows


def test_python_warnings_still_show(tmp_path: Path):
    code = "import dl4cv.pipeline, warnings; warnings.warn('a real warning')"
    done = run_stage(tmp_path, "-c", code)
    assert "UserWarning: a real warning" in done.stderr


FAKE_KERAS = """
import os
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written\\n")
os.write(2, b"I0000 00:00:1796221261.339891  6830 port.cc:153] oneDNN custom operations are on\\n")
os.write(2, b"To enable the following instructions: AVX2 FMA, in other operations, rebuild.\\n")
os.write(2, b"keras: a warning a person must see\\n")
"""


@pytest.mark.parametrize("level", ["3", "0"])
def test_load_keras_keeps_only_the_load_notices_out(tmp_path: Path, level: str):
    """A stand-in `keras` that writes what TensorFlow writes while loading, and one real line:
    the notices are dropped, the real line is kept; TF_CPP_MIN_LOG_LEVEL=0 keeps everything."""
    (tmp_path / "keras").mkdir()
    (tmp_path / "keras" / "__init__.py").write_text(FAKE_KERAS)
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO / "src")]),
        "TF_CPP_MIN_LOG_LEVEL": level,
    }
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from dl4cv.runtime import backend; print(backend.load_keras().__file__)",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "keras" / "__init__.py")
    lines = done.stderr.splitlines()
    assert "keras: a warning a person must see" in lines
    assert len(lines) == (1 if level == "3" else 4)

"""A stage's log holds what a person should read: no TensorFlow C++ lines that look like errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

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

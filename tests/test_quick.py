"""`make quick` (python -m dl4cv.quick) on a real, tiny DVC project: params.yaml ends byte-identical
(the user's uncommitted edits included) whether the run succeeds, fails or is interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dl4cv.quick import run_restoring
from tests.conftest import REPO

# The one stage: writes the profile it ran under; STAGE_EXIT fails it, STAGE_SLEEP holds it.
STAGE = """\
import os, sys, time, yaml
profile = yaml.safe_load(open("params.yaml"))["profile"]
if os.environ.get("STAGE_SLEEP"):
    open("started", "w").close()
    time.sleep(60)
open("out.txt", "w").write(profile)
sys.exit(int(os.environ.get("STAGE_EXIT", "0")))
"""
DVC_YAML = """\
stages:
  show:
    cmd: python stage.py
    params: [profile]
    outs: [out.txt]
"""
COMMITTED = "profile: book   # book | quick\nseed: 1\n"
USER_EDIT = b"profile: book   # book | quick\nseed: 2        # mine, not committed\n"


def environment(**extra: str) -> dict[str, str]:
    """The venv's python first on PATH (stage commands say `python`), our source first."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1", **extra)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    return env


def sh(root: Path, *command: str) -> str:
    done = subprocess.run(
        command, cwd=root, env=environment(), capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """git + DVC project with one committed stage, and an uncommitted edit of params.yaml."""
    (tmp_path / "stage.py").write_text(STAGE)
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "params.yaml").write_text(COMMITTED)
    sh(tmp_path, "git", "init", "-q")
    sh(tmp_path, "git", "config", "user.email", "test@example.com")
    sh(tmp_path, "git", "config", "user.name", "test")
    sh(tmp_path, sys.executable, "-m", "dvc", "init", "-q")
    sh(tmp_path, "git", "add", "-A")
    sh(tmp_path, "git", "commit", "-q", "-m", "tiny project")
    (tmp_path / "params.yaml").write_bytes(USER_EDIT)
    return tmp_path


def quick(root: Path, *args: str, **env: str) -> subprocess.Popen:
    """`python -m dl4cv.quick` in its own process group, as a terminal runs `make quick`."""
    return subprocess.Popen(
        [sys.executable, "-m", "dl4cv.quick", *args],
        cwd=root,
        env=environment(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.mark.parametrize("jobs", [[], ["--jobs", "2"]], ids=["serial", "jobs2"])
def test_quick_run_keeps_params_and_results_and_repro_reruns_the_book(project: Path, jobs):
    assert quick(project, *jobs).wait(timeout=120) == 0

    assert (project / "params.yaml").read_bytes() == USER_EDIT
    assert sh(project, "git", "diff", "--cached") == ""  # nothing left staged either
    assert (project / "out.txt").read_text() == "quick"  # the results stay
    status = json.loads(sh(project, sys.executable, "-m", "dvc", "status", "--json"))
    assert status == {"show": [{"changed deps": {"params.yaml": {"profile": "modified"}}}]}

    # one experiment recorded, with the quick profile (parallel: `dvc exp save`)
    shown = sh(project, sys.executable, "-m", "dvc", "exp", "show", "--json")
    exps = [e for rev in json.loads(shown) for e in rev.get("experiments") or []]
    assert len(exps) == 1
    assert exps[0]["revs"][0]["data"]["params"]["params.yaml"]["data"]["profile"] == "quick"

    sh(project, sys.executable, "-m", "dvc", "repro", "-q")
    assert (project / "out.txt").read_text() == "book"


@pytest.mark.parametrize("jobs", [[], ["--jobs", "2"]], ids=["serial", "jobs2"])
def test_failing_quick_run_restores_params(project: Path, jobs):
    assert quick(project, *jobs, STAGE_EXIT="3").wait(timeout=120) != 0
    assert (project / "params.yaml").read_bytes() == USER_EDIT


@pytest.mark.parametrize("jobs", [[], ["--jobs", "2"]], ids=["serial", "jobs2"])
def test_interrupted_quick_run_restores_params(project: Path, jobs):
    run = quick(project, *jobs, STAGE_SLEEP="1")
    deadline = time.monotonic() + 120
    while not (project / "started").exists():
        assert run.poll() is None and time.monotonic() < deadline, "the stage never started"
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group

    assert run.wait(timeout=60) != 0
    assert (project / "params.yaml").read_bytes() == USER_EDIT
    assert not (project / "out.txt").exists()  # the stage really was stopped midway


@pytest.mark.parametrize(
    ("code", "status"),
    [("sys.exit(3)", 3), ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", 143)],
)
def test_the_command_exit_status_is_kept(tmp_path: Path, code: str, status: int):
    params = tmp_path / "params.yaml"
    params.write_bytes(b"profile: book\n")
    command = f"import sys; open({str(params)!r}, 'w').write('profile: quick\\n'); {code}"
    assert run_restoring(params, [sys.executable, "-c", command]) == status
    assert params.read_bytes() == b"profile: book\n"


# Rewrites params.yaml, then on Ctrl-C takes its time to clean up (rewriting it once more).
SLOW_TO_STOP = """\
import sys, time
open("params.yaml", "w").write("profile: quick\\n")
open("started", "w").close()
try:
    time.sleep(60)
except KeyboardInterrupt:
    time.sleep(0.5)
    open("params.yaml", "w").write("profile: quick\\n")
    sys.exit(7)
"""


def test_ctrl_c_waits_for_the_command_then_restores(tmp_path: Path):
    (tmp_path / "params.yaml").write_bytes(b"profile: book\n")
    runner = (
        "import sys; from pathlib import Path; from dl4cv.quick import run_restoring; "
        f"sys.exit(run_restoring(Path('params.yaml'), [sys.executable, '-c', {SLOW_TO_STOP!r}]))"
    )
    run = subprocess.Popen(
        [sys.executable, "-c", runner], cwd=tmp_path, env=environment(), start_new_session=True
    )
    while not (tmp_path / "started").exists():
        assert run.poll() is None, "the command never started"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGINT)

    assert run.wait(timeout=30) == 7
    assert (tmp_path / "params.yaml").read_bytes() == b"profile: book\n"


def test_quick_in_a_fresh_project_prints_no_dvc_warning(project: Path):
    """`dvc exp run`'s checkout warned once per output not built yet ("No file hash info found
    ... It won't be created", 161 lines in a fresh clone of the project); make quick must not."""
    done = subprocess.run(
        [sys.executable, "-m", "dl4cv.quick"],
        cwd=project,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (project / "out.txt").read_text() == "quick"
    assert "WARNING" not in done.stdout + done.stderr

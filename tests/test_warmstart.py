"""The warm start server, for real: stage scripts handed to a forked worker over a Unix socket."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from dl4cv.pipeline import cli  # as stages/*.py start
    cli.warmstart.hand_over()
    Path("pid").write_text(str(os.getpid()))
    print("out", os.environ.get("MARK"), Path.cwd().name, sys.argv[1:], "yaml" in sys.modules)
    print("err", file=sys.stderr)
    mode = sys.argv[1]
    if mode == "exit3":
        sys.exit(3)
    if mode == "message":
        sys.exit("a one-line failure")
    if mode == "raise":
        raise RuntimeError("boom")
    if mode == "term":
        signal.signal(signal.SIGTERM, lambda *_: (Path("got-term").write_text("1"), sys.exit(7)))
    if mode in ("sleep", "term"):
        Path("ready").write_text("1")
        time.sleep(60)
    if mode == "primed":
        utils = sys.modules.get("mlflow.utils.requirements_utils")
        print("primed", utils is not None and utils._MODULES_TO_PACKAGES is not None)
    """
)


@pytest.fixture
def warm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A private runtime folder and a server that preloads only PyYAML; stopped afterwards."""
    runtime = Path(tempfile.mkdtemp(prefix="w", dir="/tmp"))  # short: a socket path is <108 B
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("DL4CV_WARM", "1")
    monkeypatch.setenv("DL4CV_WARM_PRELOAD", "yaml")
    monkeypatch.setenv("DL4CV_WARM_IDLE", "60")
    monkeypatch.setenv("PYTHONPATH", str(REPO / "src"))
    # A newcomer's shell: the variables dl4cv sets itself must key the server the same way for
    # a stage and for `python -m dl4cv.runtime.warmstart`.
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    (work / "script.py").write_text(SCRIPT)
    yield work
    subprocess.run([sys.executable, "-m", "dl4cv.runtime.warmstart", "stop"], capture_output=True)
    shutil.rmtree(runtime, ignore_errors=True)


def run_script(work: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "script.py", *args],
        cwd=work,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )


def wait_for_server(work: Path) -> None:
    """The first run starts the server and runs cold; wait until the socket answers."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = subprocess.run(
            [sys.executable, "-m", "dl4cv.runtime.warmstart", "status"],
            capture_output=True,
            cwd=work,
        )
        if status.returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError("the warm server never came up")


def test_first_run_is_cold_later_runs_are_forks_of_the_server(warm):
    cold = run_script(warm, "ok", MARK="first")
    assert cold.returncode == 0
    assert cold.stdout == "out first work ['ok'] False\n"  # ran here: yaml never imported
    cold_pid = int((warm / "pid").read_text())
    wait_for_server(warm)

    hot = run_script(warm, "ok", MARK="second")
    assert hot.returncode == 0
    # The worker has the caller's environment, folder and arguments, and the preloaded yaml.
    assert hot.stdout == "out second work ['ok'] True\n"
    assert hot.stderr == "err\n"
    assert int((warm / "pid").read_text()) != cold_pid


def test_workers_inherit_what_the_server_primed(warm):
    """MLflow's map of installed distributions, read once by the server (seconds per training
    otherwise): a cold run has none, a worker has it before it logs anything."""
    assert run_script(warm, "primed").stdout.endswith("primed False\n")
    wait_for_server(warm)
    assert run_script(warm, "primed").stdout.endswith("primed True\n")


@pytest.mark.parametrize(
    ("mode", "code", "stderr_has"),
    [("exit3", 3, "err\n"), ("message", 1, "a one-line failure"), ("raise", 1, "RuntimeError")],
)
def test_exit_status_and_errors_come_back(warm, mode, code, stderr_has):
    run_script(warm, "ok")
    wait_for_server(warm)
    result = run_script(warm, mode)
    assert result.returncode == code
    assert stderr_has in result.stderr
    assert result.stdout.endswith("True\n")  # it ran in the server's worker


def start_in_worker(work: Path, mode: str) -> subprocess.Popen:
    """A client whose script, run by a worker of a running server, has got to its sleep."""
    run_script(work, "ok")
    wait_for_server(work)
    client = subprocess.Popen([sys.executable, "script.py", mode], cwd=work)
    deadline = time.monotonic() + 30
    while not (work / "ready").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (work / "ready").exists()
    return client


def test_a_killed_stage_takes_its_worker_with_it(warm):
    client = start_in_worker(warm, "sleep")
    worker = int((warm / "pid").read_text())
    assert worker != client.pid
    client.kill()  # SIGKILL: nothing can be forwarded, the hang-up must do it
    client.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{worker}").exists() or "Z" in _state(worker)


def test_signals_are_forwarded_to_the_worker(warm):
    client = start_in_worker(warm, "term")
    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=30) == 7  # the worker's own handler ran and chose the status
    assert (warm / "got-term").exists()


def test_a_deep_runtime_folder_still_gets_a_server(warm, tmp_path, monkeypatch):
    """A Unix socket's address holds 107 bytes; a deeper XDG_RUNTIME_DIR (pytest-xdist's
    temporary folders are) must still get one server, not a server per stage dying on bind."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(deep))
    assert run_script(warm, "ok").stdout.endswith("False\n")
    wait_for_server(warm)
    assert run_script(warm, "ok").stdout.endswith("True\n")
    status = subprocess.run(
        [sys.executable, "-m", "dl4cv.runtime.warmstart", "status"], capture_output=True, text=True
    )
    assert f"socket /tmp/dl4cv-warm-{os.getuid()}/" in status.stdout  # not under `deep`


def test_stop_ends_the_server_and_removes_its_socket(warm):
    run_script(warm, "ok")
    wait_for_server(warm)
    sockets = list(Path(os.environ["XDG_RUNTIME_DIR"]).rglob("*.sock"))
    assert len(sockets) == 1
    stop = subprocess.run(
        [sys.executable, "-m", "dl4cv.runtime.warmstart", "stop"], capture_output=True
    )
    assert stop.returncode == 0 and b"warm server stopped" in stop.stdout
    deadline = time.monotonic() + 10
    while sockets[0].exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sockets[0].exists()  # a stale socket file would outlive every server
    assert run_script(warm, "ok").stdout.endswith("False\n")  # the next stage runs cold


def test_off_switch_runs_everything_cold(warm):
    for _ in range(2):
        result = run_script(warm, "ok", DL4CV_WARM="0")
        assert result.stdout.endswith("False\n")
    status = subprocess.run([sys.executable, "-m", "dl4cv.runtime.warmstart", "status"], cwd=warm)
    assert status.returncode == 1  # no server was ever started


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return "gone"


def test_a_warm_training_equals_a_cold_one(warm, mlflow_store, monkeypatch):
    """The real train stage, forked from a server that imported Keras: same numbers as cold."""
    import yaml

    from tests.conftest import toy_params

    monkeypatch.setenv("DL4CV_WARM_PRELOAD", "keras,mlflow")
    shutil.copytree(REPO / "stages", warm / "stages")
    experiment = {
        "chapter": 14,
        "dataset": "toy",
        "model": {"name": "lenet"},
        "optimizer": {"name": "sgd", "learning_rate": 0.05},
        "train": {"batch_size": 16, "epochs": 5},
    }
    (warm / "params.yaml").write_text(yaml.safe_dump(toy_params({"lenet_toy": experiment})))

    def stage(name: str, arg: str, **env: str) -> dict:
        result = subprocess.run(
            [sys.executable, f"stages/{name}.py", arg],
            cwd=warm,
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        history = json.loads((warm / "models/lenet_toy/model/history.json").read_text())
        return {k: v for k, v in history.items() if k != "epoch_seconds"}

    for name in ("download", "preprocess", "split"):  # the first one starts the server
        subprocess.run(
            [sys.executable, f"stages/{name}.py", "toy"], cwd=warm, check=True, capture_output=True
        )
    cold = stage("train", "lenet_toy", DL4CV_WARM="0")
    wait_for_server(warm)
    hot = stage("train", "lenet_toy")
    log = next(Path(os.environ["XDG_RUNTIME_DIR"]).rglob("*.log")).read_text()
    assert "stages/train.py lenet_toy: exit 0" in log  # the server's worker ran it
    assert hot == cold
    assert cold["val_accuracy"][-1] > 0.5  # it learned: ten classes, chance is 0.1


def test_a_runtime_folder_too_deep_for_a_socket_falls_back_to_tmp(monkeypatch):
    from dl4cv.runtime import warmstart

    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/0")
    assert warmstart.runtime_dir() == Path("/run/user/0") / f"dl4cv-warm-{os.getuid()}"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/tmp/" + "x" * 90)
    assert warmstart.runtime_dir() == Path("/tmp") / f"dl4cv-warm-{os.getuid()}"


def test_a_folder_others_can_write_to_gets_no_handover(warm):
    """Anyone may make /tmp/dl4cv-warm-<uid> first and plant a socket there: then stages run
    cold rather than hand their environment and terminal to whatever listens."""
    folder = Path(os.environ["XDG_RUNTIME_DIR"]) / f"dl4cv-warm-{os.getuid()}"
    folder.mkdir(mode=0o700)
    folder.chmod(0o777)
    for _ in range(2):
        assert run_script(warm, "ok").stdout.endswith("False\n")
    assert not list(folder.iterdir())  # no server was started either

"""A copy of the project in a temporary git repository, run by the real `dvc` with the warm start
on, for the end-to-end tests (test_pipeline.py, test_resume_pipeline.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import REPO

PROJECT_FILES = [
    "book",
    "src",
    "stages",
    "dvc.yaml",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvcignore",
    ".gitignore",
    "pyproject.toml",
]
TIMEOUT = 1200


def real_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


KNN_DIGITS = {"chapter": 7, "dataset": "digits", "model": {"name": "knn", "n_neighbors": 1}}


def digits_params(experiments: dict, profile: str | None = None) -> dict:
    """The real params.yaml's sections, on the bundled 8x8 digits alone (nothing downloaded),
    with `experiments` only; no captcha, detect, ImageNet, predictions or exercises."""
    real = real_params()
    params = {
        k: v
        for k, v in real.items()
        if k not in ("captcha", "detect", "imagenet", "predictions", "exercises")
    }
    params["datasets"] = {"digits": real["datasets"]["digits"]}
    params["experiments"] = experiments
    if profile is not None:
        params["profile"] = profile
    return params


def stages_of(*names: str) -> dict:
    """The real dvc.yaml with only the stages `names` (and no top-level plots: the exercises'
    folders it lists are gone)."""
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    pipeline["stages"] = {k: v for k, v in pipeline["stages"].items() if k in names}
    del pipeline["plots"]
    return pipeline


def make_repo(root: Path, params: dict, dvc_yaml: dict | None = None) -> Path:
    """The project's files as committed, with `params` as params.yaml (and `dvc_yaml` as
    dvc.yaml when given), in a new git repository at `root`."""
    for name in PROJECT_FILES:
        src, dst = REPO / name, root / name
        if not src.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, dst)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if dvc_yaml is not None:
        (root / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_COMMITTER_NAME": "t"}
    for args in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
    ):
        run(args, root, env)
    return root


def warm_env(runtime: Path, mirror: Path | None = None) -> dict[str, str]:
    """The environment a user's `dvc` runs in: no test settings for MLflow or dl4cv, the warm
    start on (conftest turns it off for the other tests), with its own runtime folder so the
    server is this test's alone; an idle server exits after a few minutes if teardown fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DL4CV_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DL4CV_WARM"] = "1"
    env["DL4CV_WARM_IDLE"] = "300"
    env["XDG_RUNTIME_DIR"] = str(runtime)
    if mirror is not None:
        env["DL4CV_MIRROR"] = str(mirror)
    return env


def warm_command(action: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`python -m dl4cv.runtime.warmstart status|stop`, run as a stage would run it: same
    interpreter on PATH, same environment, hence the same server."""
    return subprocess.run(
        ["python", "-m", "dl4cv.runtime.warmstart", action],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def warm_log(runtime: Path) -> str:
    """What the warm servers of `runtime` logged: one line per stage a worker ran."""
    return "".join(p.read_text() for p in sorted(runtime.rglob("*.log")))


def stop_warm(runtime: Path, env: dict[str, str]) -> None:
    """Stop this environment's server; fail if another one was left in `runtime` (a stage
    that ran with other settings than `env` would have started it)."""
    warm_command("stop", env)
    deadline = time.monotonic() + 10
    while (left := sorted(p.name for p in runtime.rglob("*.sock"))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"warm servers still listening in {runtime}: {left}"


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, (
        f"{args} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


def processes_in(root: Path, below: bool = False) -> dict[int, str]:
    """Live processes (not zombies) whose working folder is `root` (or, `below`, a folder in
    it: DVC's temporary copies): pid -> command line."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(proc / "cwd"))
            if cwd != root and not (below and root in cwd.parents):
                continue
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def user_env(**extra: str) -> dict[str, str]:
    """The environment a user's `dvc` runs in: no test settings for MLflow or dl4cv, this
    interpreter's tools on PATH, the warm start off; then `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DL4CV_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env | {"DL4CV_WARM": "0"} | extra


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

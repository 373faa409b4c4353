"""A team's DVC workflow with the real tools, in temporary git repositories.

One clone runs a small quick-profile pipeline (digits: a k-NN and a 1-epoch ShallowNet) and
`dvc push`es to an SSH remote served by a real sshd this module starts on 127.0.0.1 (Debian's
openssh-server, as the current user, its own host key and authorized key); fresh clones pull
and retrain nothing. The same run backs the checks of `dvc exp show` (120 columns), `dvc plots
show` and `dvc queue start -j 2` against the default sqlite MLflow store.

sshd is skipped on a developer's machine without it and fails in CI: .ci/run installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.dvc_repo import KNN_DIGITS, digits_params, make_repo, run, stages_of, stop_warm, warm_env

pytestmark = pytest.mark.integration

SSHD = Path("/usr/sbin/sshd")
KEPT_STAGES = ("download", "preprocess", "split", "train", "evaluate", "report")
EXPERIMENTS = ("knn_digits", "shallownet_digits")
RUNNING = re.compile(r"Running stage '([^']+)'")
TIMINGS: dict[str, float] = {}  # seconds per step, printed at the end (pytest -s)


def unavailable(reason: str) -> None:
    """Skip on a developer's machine; in CI a missing sshd is a broken setup, not a skip."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must have it (.ci/run installs `openssh-server`)", pytrace=False)
    pytest.skip(reason)


def team_params() -> dict:
    """The real params.yaml's sections, on digits alone, in the quick profile."""
    shallownet = {
        "chapter": 12,
        "dataset": "digits",
        "model": {"name": "shallownet"},
        "optimizer": {"name": "sgd", "learning_rate": 0.05},
        "train": {"batch_size": 64, "epochs": 1},
    }
    return digits_params({"knn_digits": KNN_DIGITS, "shallownet_digits": shallownet}, "quick")


@dataclass
class Sshd:
    port: int
    key: Path  # the member's private key: only ever in .dvc/config.local
    home: Path  # HOME of the dvc commands: ~/.ssh/known_hosts holds the server's host key
    process: subprocess.Popen  # tests/test_faults.py stops it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if not SSHD.exists():
        unavailable(f"{SSHD} not found")
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():  # its privilege separation folder
        unavailable("/run/sshd is missing (root's sshd needs it; .ci/run makes it)")
    base = tmp_path_factory.mktemp("sshd")
    for name in ("host", "member"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / name)], check=True
        )
    (base / "authorized_keys").write_text((base / "member.pub").read_text())
    port = _free_port()
    config = base / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base / 'host'}\n"
        f"AuthorizedKeysFile {base / 'authorized_keys'}\nPidFile {base / 'sshd.pid'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "Subsystem sftp internal-sftp\n"  # DVC's remote speaks SFTP
    )
    home = base / "home"
    (home / ".ssh").mkdir(parents=True)
    host_key = (base / "host.pub").read_text().split()[:2]
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {' '.join(host_key)}\n")
    with (base / "sshd.log").open("w") as server_log:
        server = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stderr=server_log)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None, (base / "sshd.log").read_text()
            time.sleep(0.1)
        yield Sshd(port, base / "member", home, server)
    finally:
        server.terminate()
        server.wait(timeout=10)


@dataclass
class Team:
    origin: Path  # the shared git repository (bare)
    remote_url: str
    one: Path
    env: dict[str, str]
    sshd: Sshd
    log: str  # the first clone's repro output


def timed(label: str, args: list[str], cwd: Path, env: dict[str, str]) -> str:
    start = time.monotonic()
    result = run(args, cwd, env)
    TIMINGS[label] = round(time.monotonic() - start, 1)
    return result.stdout + result.stderr


def point_at_remote(clone: Path, team_sshd: Sshd, env: dict[str, str]) -> None:
    """What a member runs once: their login and key go to .dvc/config.local, never committed."""
    run(["dvc", "remote", "modify", "--local", "team", "user", os.environ.get("USER", "root")],
        clone, env)  # fmt: skip
    run(["dvc", "remote", "modify", "--local", "team", "keyfile", str(team_sshd.key)], clone, env)


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, sshd: Sshd) -> Iterator[Team]:
    base = tmp_path_factory.mktemp("team")
    runtime = base / "run"
    runtime.mkdir()
    env = warm_env(runtime) | {"HOME": str(sshd.home), "USER": os.environ.get("USER", "root")}
    one = make_repo(base / "one", team_params(), stages_of(*KEPT_STAGES))
    origin = base / "origin.git"
    run(["git", "init", "-q", "--bare", str(origin)], base, env)
    remote_url = f"ssh://127.0.0.1:{sshd.port}{base / 'store'}"
    run(["dvc", "remote", "add", "-d", "team", remote_url], one, env)
    point_at_remote(one, sshd, env)
    try:
        log = timed("clone 1: dvc repro (quick)", ["dvc", "repro"], one, env)
        commit = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"]
        run(["git", "add", "-A"], one, env)
        run(commit, one, env)
        timed("clone 1: dvc push", ["dvc", "push"], one, env)
        run(["git", "push", "-q", str(origin), "HEAD:main"], one, env)
        yield Team(origin, remote_url, one, env, sshd, log)
    finally:
        stop_warm(runtime, env)
        print("\nteam timings (s):", json.dumps(TIMINGS, indent=1))


def fresh_clone(team: Team, name: str) -> Path:
    clone = team.one.parent / name
    run(
        ["git", "clone", "-q", "-b", "main", str(team.origin), str(clone)],
        team.one.parent,
        team.env,
    )
    point_at_remote(clone, team.sshd, team.env)
    return clone


def test_no_credential_is_committed(team: Team) -> None:
    """The key's path and the login live in .dvc/config.local, which git ignores."""
    committed = run(["git", "show", "HEAD:.dvc/config"], team.one, team.env).stdout
    assert team.remote_url in committed
    assert "keyfile" not in committed and "user" not in committed
    assert "keyfile" in (team.one / ".dvc" / "config.local").read_text()
    tracked = run(["git", "ls-files"], team.one, team.env).stdout.split()
    assert ".dvc/config.local" not in tracked
    assert not [line for line in tracked if "member" in line]


def test_a_fresh_clone_pulls_and_retrains_nothing(team: Team) -> None:
    two = fresh_clone(team, "two")
    timed("clone 2: dvc pull", ["dvc", "pull"], two, team.env)
    log = timed("clone 2: dvc repro", ["dvc", "repro"], two, team.env)
    assert RUNNING.findall(log) == [], log
    assert "Data and pipelines are up to date" in log
    assert "| knn_digits |" in (two / "reports" / "book.md").read_text()
    for exp_id in EXPERIMENTS:
        assert (two / "reports" / "metrics" / f"{exp_id}.json").read_text() == (
            team.one / "reports" / "metrics" / f"{exp_id}.json"
        ).read_text()
    assert (two / "models" / "shallownet_digits" / "model" / "model.keras").stat().st_size > 0


def test_repro_pull_allow_missing_in_a_fresh_clone(team: Team) -> None:
    three = fresh_clone(team, "three")
    log = timed(
        "clone 3: dvc repro --pull --allow-missing",
        ["dvc", "repro", "--pull", "--allow-missing"],
        three,
        team.env,
    )
    assert RUNNING.findall(log) == [], log
    # Skipped, not stale: the only differences DVC sees are files it left in the remote.
    status = run(["dvc", "status"], three, team.env).stdout
    changes = {
        line.split(":")[0].strip() for line in status.splitlines() if line.startswith("\t\t")
    }
    assert changes == {"not in cache", "deleted"}, status


def test_exp_show_fits_120_columns(team: Team) -> None:
    """The README's view: each experiment's headline metrics as `<id>.accuracy` columns."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], team.one, team.env).stdout)
    metrics = shown[0]["data"]["metrics"]
    assert {path: data["data"] for path, data in metrics.items()} == {
        f"reports/metrics/{exp_id}.json": {
            exp_id: {
                k: v
                for k, v in json.loads(
                    (team.one / "reports" / "experiments" / exp_id / "metrics.json").read_text()
                ).items()
                if k in ("accuracy", "precision_weighted")
            }
        }
        for exp_id in EXPERIMENTS
    }
    env = team.env | {"COLUMNS": "120"}
    make = [
        "make",
        "-s",
        "-f",
        str(REPO / "Makefile"),
        "exps",
        f"BIN={Path(sys.executable).parent}",
    ]
    # Every headline column of the whole table: a one-row-per-experiment view for DVC's rows.
    assert "knn_digits.accuracy" in run(make, team.one, env).stdout
    for exp_id in EXPERIMENTS:  # EXP: one experiment's two columns, whole, in 120 columns
        table = run([*make, f"EXP={exp_id}"], team.one, env).stdout
        lines = table.splitlines()
        assert max(map(len, lines)) <= 120, table
        header = next(line for line in lines if "Experiment" in line)
        assert header.split()[1:] == [f"{exp_id}.accuracy", f"{exp_id}.precision_weighted"], table
        accuracy = metrics[f"reports/metrics/{exp_id}.json"]["data"][exp_id]["accuracy"]
        assert f"{accuracy:.5g}" in table, table


def test_plots_show_renders_every_declared_plot(team: Team) -> None:
    out = team.one / "plots_html"
    run(["dvc", "plots", "show", "-o", str(out)], team.one, team.env)
    page = (out / "index.html").read_text()
    # A curve per epoch-trained history.csv (the k-NN's has no epochs, so no rows to draw) and
    # every PNG: curves, learning rate, confusion matrix.
    assert "reports/experiments/shallownet_digits/history.csv" in page
    for exp_id in EXPERIMENTS:
        for name in ("curves.png", "learning_rate.png", "confusion_matrix.png"):
            assert f"reports_experiments_{exp_id}_{name}" in page, (exp_id, name)
    images = [p for p in (out / "static").rglob("*.png")]
    assert len(images) == 3 * len(EXPERIMENTS)
    assert page.count('"$schema"') == 1  # the Vega chart of that history.csv


def test_queue_runs_two_variants_with_sqlite(team: Team) -> None:
    """Two workers, each its own copy under .dvc/tmp/exps, both writing the repository's
    mlflow.db. Stages run cold: a warm server started from a worker's copy outlives it."""
    env = team.env | {"DL4CV_WARM": "0"}
    for k in (3, 5):
        run(["dvc", "exp", "run", "--queue", "-S", f"experiments.knn_digits.model.n_neighbors={k}"],
            team.one, env)  # fmt: skip
    start = time.monotonic()
    run(["dvc", "queue", "start", "-j", "2"], team.one, env)
    deadline = start + 900
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], team.one, env).stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        time.sleep(2)
    TIMINGS["queue: 2 variants, -j 2"] = round(time.monotonic() - start, 1)
    assert status.count("Success") == 2, status
    logs = "".join(
        run(["dvc", "queue", "logs", name], team.one, env).stdout
        for name in re.findall(r"^\S+\s+(\S+)\s+.*Success", status, re.M)
    )
    assert "database is locked" not in logs
    shown = json.loads(run(["dvc", "exp", "show", "--json"], team.one, env).stdout)
    accuracies = [
        exp["data"]["metrics"]["reports/metrics/knn_digits.json"]["data"]["knn_digits"]["accuracy"]
        for baseline in shown
        for exp in baseline.get("experiments") or []
        for exp in exp["revs"]
    ]
    assert len(accuracies) == 2
    with sqlite3.connect(team.one / "mlflow.db") as db:
        neighbors = db.execute(
            "SELECT p.value FROM params p JOIN runs r ON r.run_uuid = p.run_uuid "
            "WHERE r.name = 'knn_digits' AND p.key LIKE '%n_neighbors'"
        ).fetchall()
    assert sorted(v for (v,) in neighbors)[-2:] == ["3", "5"], neighbors
    shutil.rmtree(team.one / ".dvc" / "tmp" / "exps", ignore_errors=True)

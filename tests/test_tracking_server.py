"""MLflow tracking through a real `mlflow server` whose backend store is a real PostgreSQL.

The session starts PostgreSQL (Debian's `postgresql` package) in a temporary folder and an
MLflow tracking server on it; the pipeline's own train and evaluate stages then log to that
server through MLFLOW_TRACKING_URI, as a team would run them. Without the PostgreSQL binaries the
tests are skipped on a developer's machine and fail in CI (CI is set): .ci/run installs them.
"""

from __future__ import annotations

import filecmp
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import NoReturn

import psycopg2
import pytest
from mlflow import MlflowClient

from dl4cv import tracking
from dl4cv.config import parse_params
from dl4cv.pipeline import download, evaluate, preprocess, split, train
from dl4cv.runtime import backend, paths
from dl4cv.runtime.fileio import read_json
from dl4cv.tracking import store
from tests.conftest import toy_params

PG_USER = "mlflow"  # the database superuser initdb creates (trust auth, 127.0.0.1 only)
PG_DATABASE = "mlflow"
SERVER_TIMEOUT_S = 120  # measured 10 to 26 s on a 2-core machine under load
EXP = "shallownet_digits"
EPOCHS = 2
PER_EPOCH = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unavailable(reason: str) -> NoReturn:
    """Skip on a developer's machine; in CI a missing server is a broken setup, not a skip."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must have them (.ci/run installs `postgresql`)", pytrace=False)
    pytest.skip(f"{reason} (apt-get install postgresql to run these tests)")


def postgres_bindir() -> Path | None:
    """The newest Debian install (/usr/lib/postgresql/<version>/bin), else initdb on PATH."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if found:
        return Path(max(found, key=lambda p: int(Path(p).parts[-3]))).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def log_tail(path: Path, chars: int = 6000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


@dataclass
class Postgres:
    bindir: Path
    root: Path  # data, socket and log; owned by `owner`
    port: int
    owner: pwd.struct_passwd | None  # whom postgres runs as when the tests run as root

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def uri(self) -> str:
        # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; the dev extras ship psycopg2.
        return f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{self.port}/{PG_DATABASE}"

    def connect(self):
        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=PG_USER, dbname=PG_DATABASE, connect_timeout=10
        )

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        """Run a PostgreSQL program as its owner (postgres refuses to run as root)."""
        user = {}
        if self.owner is not None:
            user = {"user": self.owner.pw_uid, "group": self.owner.pw_gid, "extra_groups": []}
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=90,
            **user,
        )

    def check(self, *args: str) -> None:
        done = self.ctl(*args)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n"
                f"postgres log:\n{log_tail(self.log)}"
            )


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server on a free 127.0.0.1 port with an empty `mlflow` database."""
    bindir = postgres_bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        unavailable("PostgreSQL server binaries (initdb, pg_ctl) not found")
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no `postgres` user to run PostgreSQL as")
    # Not under pytest's tmp dir: that is private to the test user (0700), and postgres runs
    # as another user.
    root = Path(tempfile.mkdtemp(prefix="dl4cv-pg-"))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    pg = Postgres(bindir, root, free_port(), owner)
    try:
        pg.check(
            "initdb", "-D", "data", "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--locale=C",
            "--no-sync",
        )  # fmt: skip
        # Durability off: a throwaway test cluster.
        options = (
            f"-p {pg.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off"
        )
        pg.check(
            "pg_ctl", "-D", "data", "-l", str(pg.log), "-o", options, "-w", "-t", "60", "start"
        )
        pg.check(
            "psql", "-h", "127.0.0.1", "-p", str(pg.port), "-U", PG_USER, "-d", "postgres",
            "-qc", f"CREATE DATABASE {PG_DATABASE}",
        )  # fmt: skip
        yield pg
    finally:
        pg.ctl("pg_ctl", "-D", "data", "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Server:
    url: str
    artifacts: Path  # --artifacts-destination
    log: Path
    postgres: Postgres
    process: subprocess.Popen
    healthy: bool = False

    def wait_healthy(self, timeout: float = SERVER_TIMEOUT_S) -> Server:
        """Block until GET /health answers 200; fail with the server's log if it never does."""
        deadline = time.monotonic() + timeout
        while not self.healthy:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited with {self.process.returncode} before answering "
                    f"{self.url}/health; its log:\n{log_tail(self.log)}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    self.healthy = True  # urlopen raises on anything but a 2xx answer
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server did not answer {self.url}/health within {timeout:.0f} s; "
                    f"its log:\n{log_tail(self.log)}"
                )
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="session")
def started_server(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory):
    """`mlflow server` on PostgreSQL, serving artifacts from a temporary folder; launched, not
    yet answering (it takes seconds: `Server.wait_healthy`)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no background job runner to start
    artifacts, log = root / "artifacts", root / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "mlflow", "server",
                "--backend-store-uri", postgres.uri(),
                "--artifacts-destination", str(artifacts),
                "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            ],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its uvicorn worker is stopped with it, as one group
        )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", artifacts, log, postgres, process)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tracking_server(started_server: Server) -> Server:
    return started_server.wait_healthy()


@pytest.fixture
def on_server(tracking_server: Server, in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Server:
    """Stages and tracking calls of this test log to the server."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server.url)
    return tracking_server


@pytest.fixture(scope="module")
def trained(started_server: Server, tmp_path_factory: pytest.TempPathFactory):
    """The pipeline on scikit-learn's bundled digits, download to evaluate, logging to the
    server. The stages that don't track run while the server starts."""
    params = parse_params(
        toy_params(
            {
                EXP: {
                    "chapter": 12,
                    "dataset": "toy",
                    "model": {"name": "shallownet"},
                    "optimizer": {"name": "sgd", "learning_rate": 0.1},
                    "train": {"batch_size": 32, "epochs": EPOCHS},
                }
            }
        ),
        source="test params",
    )
    root = tmp_path_factory.mktemp("project")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", started_server.url)
        mp.delenv("DL4CV_MIRROR", raising=False)
        for stage in (download, preprocess, split):
            stage.run("toy", params)
        import keras  # noqa: F401  (seconds to load: meanwhile the server starts)

        started_server.wait_healthy()
        info = train.run(EXP, params)
        metrics = evaluate.run(EXP, params)
    return SimpleNamespace(
        root=root,
        info=info,
        metrics=metrics,
        history=read_json(root / paths.model_dir(EXP) / train.HISTORY_FILE),
        client=MlflowClient(started_server.url),
    )


def artifact_paths(client: MlflowClient, run_id: str, folder: str | None = None) -> list[str]:
    """Every file of a run, recursively, as the server lists them."""
    out: list[str] = []
    for item in client.list_artifacts(run_id, folder):
        out += artifact_paths(client, run_id, item.path) if item.is_dir else [item.path]
    return sorted(out)


def test_training_is_tracked_on_the_server(trained):
    client, run_id = trained.client, trained.info["run_id"]
    run = client.get_run(run_id)
    assert run.info.run_name == EXP
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == tracking.EXPERIMENT_NAME
    p = run.data.params
    assert p["model.name"] == "shallownet"
    assert p["train.epochs"] == str(EPOCHS)
    assert p["train.batch_size"] == "32"
    assert p["optimizer.learning_rate"] == "0.1"
    assert p["seed"] == "1"
    assert int(p["split.train"]) + int(p["split.test"]) == 1797  # all of sklearn's digits
    for key in PER_EPOCH:
        logged = client.get_metric_history(run_id, key)
        assert [m.step for m in logged] == list(range(1, EPOCHS + 1)), key
        assert [m.value for m in logged] == pytest.approx(trained.history[key]), key
    metrics = run.data.metrics
    assert trained.metrics["accuracy"] > 0.5  # ten classes: chance is 0.1
    assert metrics["test_accuracy"] == pytest.approx(trained.metrics["accuracy"])
    assert metrics["test_precision_weighted"] == pytest.approx(
        trained.metrics["precision_weighted"]
    )
    assert metrics["rejected_images"] == 0
    assert trained.metrics["mlflow_run_id"] == run_id
    tags = run.data.tags
    assert tags["dl4cv.experiment"] == EXP
    assert tags["keras_backend"] == backend.name()
    assert tags["dataset"] == "toy"
    assert tags["dataset.origin"] == "bundled"
    descriptor = read_json(trained.root / paths.raw_dir("toy") / "dataset.json")
    assert tags["dataset.sha256"] == descriptor["sha256"]


def test_artifacts_are_uploaded_to_the_server(trained, tracking_server):
    client, run_id = trained.client, trained.info["run_id"]
    run = client.get_run(run_id)
    # A server keeps artifacts itself: the experiment must not point at a local folder.
    location = client.get_experiment(run.info.experiment_id).artifact_location
    assert location.startswith("mlflow-artifacts:"), location
    listed = artifact_paths(client, run_id)
    model, report = paths.model_dir(EXP), paths.report_dir(EXP)
    expected = {
        "checkpoints/best.keras": model / "best.keras",
        "report/metrics.json": report / "metrics.json",
        "report/report.txt": report / "report.txt",
        "report/confusion_matrix.png": report / "confusion_matrix.png",
        "report/curves.png": report / "curves.png",
        "report/history.csv": report / "history.csv",
        "data/toy-rejects.csv": paths.rejects_file("toy"),
    }
    assert set(expected) <= set(listed), listed
    # The bytes are in the server's --artifacts-destination, the same as the stage wrote.
    stored = {
        p.relative_to(tracking_server.artifacts) for p in tracking_server.artifacts.rglob("*")
    }
    for name, local in expected.items():
        matches = [p for p in stored if p.as_posix().endswith(f"{run_id}/artifacts/{name}")]
        assert len(matches) == 1, name
        assert filecmp.cmp(tracking_server.artifacts / matches[0], trained.root / local, False)
    downloaded = client.download_artifacts(run_id, "report/metrics.json", str(trained.root))
    assert read_json(Path(downloaded)) == trained.metrics
    # Nothing went to a local store beside the project.
    for local_store in ("mlflow.db", "mlruns", tracking.ARTIFACTS_DIR):
        assert not (trained.root / local_store).exists(), local_store


def test_the_run_is_a_row_in_postgresql(trained, tracking_server):
    run_id = trained.info["run_id"]
    with tracking_server.postgres.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT version()")
        assert cur.fetchone()[0].startswith("PostgreSQL ")
        cur.execute(
            "SELECT r.name, r.status, r.lifecycle_stage, e.name FROM runs r"
            " JOIN experiments e ON e.experiment_id = r.experiment_id WHERE r.run_uuid = %s",
            (run_id,),
        )
        assert cur.fetchall() == [(EXP, "FINISHED", "active", tracking.EXPERIMENT_NAME)]
        cur.execute(
            "SELECT step, value FROM metrics WHERE run_uuid = %s AND key = 'loss' ORDER BY step",
            (run_id,),
        )
        rows = cur.fetchall()
        assert [step for step, _ in rows] == list(range(1, EPOCHS + 1))
        assert [value for _, value in rows] == pytest.approx(trained.history["loss"])
        cur.execute(
            "SELECT value FROM params WHERE run_uuid = %s AND key = 'model.name'", (run_id,)
        )
        assert cur.fetchall() == [("shallownet",)]


def runs_named(server: Server, name: str) -> list[str]:
    with server.postgres.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT run_uuid FROM runs WHERE name = %s", (name,))
        return [row[0] for row in cur.fetchall()]


def test_a_run_reopened_through_the_server_stays_the_same_run(on_server):
    """What a resumed training and the evaluate stage do: reopen the run by its id."""
    with tracking.run("resume_probe") as first:
        run_id = first.run_id
        tracking.log_metrics({"loss": 1.0}, step=1)
    with tracking.run("resume_probe", run_id=run_id) as again:
        assert again.run_id == run_id
        tracking.log_metrics({"loss": 0.5}, step=2)
        tracking.set_tags({"resumed_from_epoch": "1"})
    client = MlflowClient(on_server.url)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "resume_probe"
    assert run.data.tags["resumed_from_epoch"] == "1"
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5)]
    assert runs_named(on_server, "resume_probe") == [run_id]


def test_a_run_the_server_lacks_is_replaced_by_a_new_one(on_server, caplog):
    """The server answers RESOURCE_DOES_NOT_EXIST over REST, as a store does in-process."""
    missing = "0123456789abcdef0123456789abcdef"
    with (
        caplog.at_level("WARNING", logger="dl4cv.tracking"),
        tracking.run("lost_probe", run_id=missing) as active,
    ):
        tracking.log_metrics({"loss": 0.5}, step=3)
    assert active.run_id != missing
    assert missing in caplog.text
    assert runs_named(on_server, "lost_probe") == [active.run_id]


def test_a_database_used_directly_keeps_artifacts_in_the_repository(
    tracking_server, in_tmp, monkeypatch
):
    """MLFLOW_TRACKING_URI may name the database itself, no server: artifacts then go to the
    repository's mlartifacts/ as with sqlite, not to ./mlruns of wherever the stage ran (for
    `dvc exp run --temp`, a copy deleted afterwards)."""
    # The server's database, already migrated (a new one takes seconds), in an experiment of
    # its own: the server's `dl4cv` keeps its artifacts on the server.
    monkeypatch.setattr(store, "EXPERIMENT_NAME", "dl4cv-direct")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server.postgres.uri())
    exps = in_tmp / ".dvc" / "tmp" / "exps" / "run1"
    exps.mkdir(parents=True)
    monkeypatch.chdir(exps)
    (exps / "note.txt").write_text("kept")
    with tracking.run("direct_probe") as active:
        tracking.log_artifact(exps / "note.txt", "report")
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment(client.get_run(active.run_id).info.experiment_id)
    assert experiment.name == "dl4cv-direct"
    assert experiment.artifact_location == (in_tmp / tracking.ARTIFACTS_DIR).as_uri()
    stored = in_tmp / tracking.ARTIFACTS_DIR / active.run_id / "artifacts"
    assert client.get_run(active.run_id).info.artifact_uri == stored.as_uri()
    assert (stored / "report" / "note.txt").read_text() == "kept"
    assert not (exps / "mlruns").exists()

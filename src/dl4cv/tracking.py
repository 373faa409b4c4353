"""MLflow: the one place that knows run names, params, tags, metrics and artifacts.

Default store: `sqlite:///mlflow.db` in the repository root (where stages run);
MLFLOW_TRACKING_URI overrides it (a server, PostgreSQL...). One run per experiment each time it
trains, named by the experiment id; evaluation logs into the same run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EXPERIMENT_NAME = "dl4cv"
ARTIFACTS_DIR = "mlartifacts"
METRICS_PER_BATCH = 1000  # the most MLflow accepts in one log_batch request
# The experiment's kind, as MLflow 3's UI names them (mlflow.experimentKind, ExperimentKind):
# model training, not GenAI. The page a browser opens on is the UI's own mode, kept per browser:
# `?workflowType=machine_learning` in the address opens the runs table (README, `make ui`).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def repo_root() -> Path:
    """The repository the stage runs for. `dvc exp run --temp/--queue` runs stages in a copy
    under `.dvc/tmp/exps/`; their runs still belong in the repository's own store."""
    cwd = Path.cwd()
    parts = cwd.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def _mlflow():
    import mlflow  # heavy import, paid only by stages that track

    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri())
    with _first_use_lock():
        return _experiment(mlflow)


@contextmanager
def _first_use_lock() -> Iterator[None]:
    """One process at a time through a sqlite store's first use: the first creates and
    migrates the database and the experiment, the others wait and then find them (stages in
    parallel, `dvc queue start -j 3`, would otherwise race to migrate the same file:
    'duplicate column name', or create the experiment twice)."""
    uri = tracking_uri()
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    try:
        handle = Path(uri.removeprefix("sqlite:///") + ".lock").open("a")  # noqa: SIM115
    except OSError:  # no folder, no right to write there: MLflow's own error says it better
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _experiment(mlflow):
    """The dl4cv experiment, created (MLflow's model-training kind) where missing."""
    experiment = mlflow.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is None:
        location = None  # a server (http://...) keeps artifacts where it was told to
        # A database used directly would put them in ./mlruns of the working directory, for
        # `dvc exp run --temp` a copy deleted afterwards: keep them in the repository.
        scheme = tracking_uri().split(":", 1)[0].split("+", 1)[0]  # postgresql+psycopg2
        if scheme in ("sqlite", "postgresql", "mysql", "mssql"):
            location = (repo_root() / ARTIFACTS_DIR).as_uri()
        mlflow.create_experiment(
            EXPERIMENT_NAME,
            artifact_location=location,
            tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
        )
    elif experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # made before the tag
        mlflow.MlflowClient().set_experiment_tag(
            experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND
        )
    mlflow.set_experiment(EXPERIMENT_NAME)
    return mlflow


def prepare() -> None:
    """Create the store and the experiment now (before queue workers start, so that a store
    that cannot be opened is reported once, not by every experiment)."""
    _mlflow()


@contextmanager
def run(exp_id: str, run_id: str | None = None) -> Iterator[Any]:
    """Start (or reopen, to resume a killed training) the MLflow run of an experiment.

    A run the store no longer has (a new store, a deleted run) is replaced by a new one."""
    mlflow = _mlflow()
    if run_id is not None and not _run_exists(mlflow, run_id):
        log.warning("MLflow run %s is not in %s; starting a new run", run_id, tracking_uri())
        run_id = None
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else exp_id) as active:
        yield active


def _run_exists(mlflow, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.get_run(run_id).info.lifecycle_stage != "deleted"
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    return {prefix: value}


def log_params(params: dict[str, Any]) -> None:
    import mlflow

    mlflow.log_params({k: ("null" if v is None else v) for k, v in params.items()})


def set_tags(tags: dict[str, str]) -> None:
    import mlflow

    mlflow.set_tags(tags)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_metric_history(history: dict[str, Sequence[float]], steps: Sequence[int]) -> None:
    """Log `history[name][step - 1]` at each 1-based step, a thousand values per request:
    log_metrics costs one store round trip per step (tens of ms on sqlite)."""
    import mlflow
    from mlflow.entities import Metric

    run_id = mlflow.active_run().info.run_id
    now = int(time.time() * 1000)
    metrics = [
        Metric(name, float(values[step - 1]), now, step)
        for name, values in history.items()
        for step in steps
    ]
    client = mlflow.MlflowClient()
    for start in range(0, len(metrics), METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + METRICS_PER_BATCH])


def log_artifact(path: Path, folder: str | None = None) -> None:
    import mlflow

    if path.exists():
        mlflow.log_artifact(str(path), artifact_path=folder)


def log_text(text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(text, artifact_file)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"

"""The MLflow store: where it is, how long a call to it may take, and the dl4cv experiment.

Default store: `sqlite:///mlflow.db` in the repository root (where stages run);
MLFLOW_TRACKING_URI overrides it (a server, PostgreSQL...).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dl4cv.runtime.paths import repo_root

EXPERIMENT_NAME = "dl4cv"
ARTIFACTS_DIR = "mlartifacts"
# The experiment's kind, as MLflow 3's UI names them (mlflow.experimentKind, ExperimentKind):
# model training, not GenAI. The page a browser opens on is the UI's own mode, kept per browser:
# `?workflowType=machine_learning` in the address opens the runs table (docs/parameters.md,
# `make ui`).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# A call to a tracking server gets one try of at most this many seconds (MLflow's defaults: 7
# retries with backoff, 120 s each: minutes of a stage spent on a server that is down). What
# cannot be sent waits in the journal for `python -m dl4cv.tracking sync`. The user's own
# settings of these variables win.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


_connected: dict[str, Any] = {}  # tracking URI -> mlflow, set to it


def connect() -> Any:
    """The `mlflow` module set to the store, with the dl4cv experiment made where missing
    (once per process and store)."""
    uri = tracking_uri()
    if uri in _connected:
        return _connected[uri]
    limit_http()
    import mlflow  # heavy import, paid only where runs are sent

    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(uri)
    with _first_use_lock():
        _connected[uri] = _experiment(mlflow)
    return mlflow


def limit_http() -> None:
    """Calls to a tracking server: one try each, seconds at most (HTTP_LIMITS)."""
    for name, value in HTTP_LIMITS.items():
        os.environ.setdefault(name, value)
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # its retry lines; we say it once


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


def _experiment(mlflow: Any) -> Any:
    """The dl4cv experiment, created (MLflow's model-training kind) where missing."""
    experiment = mlflow.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is None:
        location = None  # a server (http://...) keeps artifacts where it was told to
        # A database used directly would put them in ./mlruns of the working directory, for
        # `dvc exp run --temp` a copy deleted afterwards: keep them in the repository.
        scheme = tracking_uri().split(":", 1)[0].split("+", 1)[0]  # postgresql+psycopg2
        if scheme in ("sqlite", "postgresql", "mysql", "mssql"):
            location = (repo_root() / ARTIFACTS_DIR).as_uri()
        from mlflow.exceptions import MlflowException

        try:
            mlflow.create_experiment(
                EXPERIMENT_NAME,
                artifact_location=location,
                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
            )
        except MlflowException as exc:  # made meanwhile by another process on the same server
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    elif experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # made before the tag
        mlflow.MlflowClient().set_experiment_tag(
            experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND
        )
    mlflow.set_experiment(EXPERIMENT_NAME)
    return mlflow

"""The one writer of MLflow runs: sends journal entries (dl4cv.tracking.journal) to the store.

A stage's entry is sent as it grows, by a thread beside the training, so epochs never wait
on the store; the stage waits for it only at its end. The first call that fails (the server
is down, its database full) stops the sending: what is left stays in the journal, for
`python -m dl4cv.tracking sync`. Sending an operation twice (a process killed between the
call and the note that it was made) adds nothing: runs are found by their `dl4cv.record` tag,
params and tags only where missing, metrics keep their original time and step (the store
keeps one of identical points), the model once per run.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from dl4cv.tracking import store
from dl4cv.tracking.journal import Entry, Progress, entries

log = logging.getLogger("dl4cv.tracking")

RECORD_TAG = "dl4cv.record"  # the journal key of the entry that made the run
PARAMS_PER_BATCH = 100  # the most MLflow accepts in one log_batch request
METRICS_PER_BATCH = 1000
TAGS_PER_BATCH = 100


class SendError(Exception):
    """The store did not take an operation; the message is one line."""

    @property
    def timed_out(self) -> bool:
        """The store took a connection and never answered (another try would wait as long)."""
        return "timed out" in str(self)


def reason(exc: BaseException) -> str:
    """One short line of what went wrong (MLflow's REST errors quote whole tracebacks)."""
    text = re.sub(r"\s+", " ", str(exc)).strip()
    refused = re.search(r"(Connection refused|Name or service not known|timed out)", text)
    if refused:
        text = refused.group(1)
    return f"{type(exc).__name__}: {text[:200]}"


def send(entry: Entry, live: bool = False) -> None:
    """Send what `entry` holds beyond what was sent. `live`: its stage still writes it (then the
    run is reopened as RUNNING); otherwise a killed stage's entry ends its run KILLED.
    Raises SendError where the store fails; what was sent stays noted."""
    try:
        mlflow = store.connect()
        client = mlflow.MlflowClient()
        progress = entry.progress
        ops = entry.ops()
        for index in range(progress.ops, len(ops)):
            _send_op(mlflow, client, entry, ops[index], progress, live)
            progress.ops = index + 1
            entry.progress = progress
        if not live and not entry.closed() and progress.run_id is not None:
            run = client.get_run(progress.run_id)
            if run.info.status == "RUNNING":  # a killed stage's run; a resumed one may end it
                client.set_terminated(progress.run_id, "KILLED")
    except SendError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the store raised: the entry waits
        raise SendError(reason(exc)) from exc


def _send_op(
    mlflow: Any, client: Any, entry: Entry, op: dict, progress: Progress, live: bool
) -> None:
    kind = op["op"]
    if kind == "start":
        _start(client, entry, op, progress, live)
        return
    run_id = progress.run_id
    if op.get("if_new") and not progress.created:
        return
    if kind == "tags":
        tags = op["tags"]
        if op.get("missing_only") and not progress.created:
            present = client.get_run(run_id).data.tags
            tags = {k: v for k, v in tags.items() if k not in present}
        _log_tags(client, run_id, tags)
    elif kind == "params":
        present = client.get_run(run_id).data.params
        _log_params(client, run_id, {k: v for k, v in op["params"].items() if k not in present})
    elif kind == "metrics":
        from mlflow.entities import Metric

        points = [Metric(k, v, t, s) for k, v, t, s in op["metrics"]]
        for start in range(0, len(points), METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=points[start : start + METRICS_PER_BATCH])
    elif kind == "input":
        from dl4cv.tracking.datasets import dataset_input

        client.log_inputs(run_id, datasets=[dataset_input(op)])
    elif kind == "artifact":
        client.log_artifact(run_id, str(entry.path / op["file"]), artifact_path=op["folder"])
    elif kind == "model":
        _log_model(mlflow, client, run_id, entry.path / op["dir"], op)
    elif kind == "register":
        _register(mlflow, client, run_id, op["name"], op["model"])
    elif kind == "end":
        client.set_terminated(run_id, op["status"], end_time=op["time"])
    else:
        raise SendError(f"{entry.path}: unknown operation {kind!r}")


def _start(client: Any, entry: Entry, op: dict, progress: Progress, live: bool) -> None:
    """Find the run the entry records (by id, else by its record key) or make it."""
    if progress.run_id is None:
        run_id = op.get("run_id")
        if run_id is not None and not _exists(client, run_id):
            log.warning(
                "MLflow run %s is not in %s; starting a new run", run_id, store.tracking_uri()
            )
            run_id = None
        record = op["record"]
        if run_id is None:
            run_id = _find(client, record)
            progress.created = run_id is not None and record == entry.key  # a lost answer
        if run_id is None:
            experiment = client.get_experiment_by_name(store.EXPERIMENT_NAME)
            run = client.create_run(
                experiment.experiment_id,
                start_time=op["time"],
                tags={RECORD_TAG: record, **op["tags"]},
                run_name=op["name"],
            )
            run_id, progress.created = run.info.run_id, True
        progress.run_id = run_id
    if live and not progress.created:
        client.update_run(progress.run_id, status="RUNNING")


def _exists(client: Any, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id).info.lifecycle_stage != "deleted"
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise


def _find(client: Any, record: str) -> str | None:
    experiment = client.get_experiment_by_name(store.EXPERIMENT_NAME)
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{RECORD_TAG}` = '{record}'"
    )
    return runs[0].info.run_id if runs else None


def _log_tags(client: Any, run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    items = [RunTag(k, str(v)) for k, v in tags.items()]
    for start in range(0, len(items), TAGS_PER_BATCH):
        client.log_batch(run_id, tags=items[start : start + TAGS_PER_BATCH])


def _log_params(client: Any, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)) for k, v in params.items()]
    for start in range(0, len(items), PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start : start + PARAMS_PER_BATCH])


def _log_model(mlflow: Any, client: Any, run_id: str, saved: Path, op: dict) -> None:
    """Log the MLflow Model saved in the entry as the run's `op["name"]`, once per run."""
    from mlflow.models import Model

    outputs = client.get_run(run_id).outputs
    for output in outputs.model_outputs if outputs else []:
        if client.get_logged_model(output.model_id).name == op["name"]:
            return

    def save_model(path: str, mlflow_model: Model, **_: Any) -> None:
        """Put the saved model in MLflow's folder; the MLmodel file gets this run's ids."""
        shutil.copytree(saved, path, dirs_exist_ok=True)
        saved_model = Model.load(str(saved))
        for attr in ("run_id", "artifact_path", "model_uuid", "model_id"):
            setattr(saved_model, attr, getattr(mlflow_model, attr))
        mlflow_model.__dict__.update(saved_model.__dict__)
        mlflow_model.save(str(Path(path) / "MLmodel"))

    Model.log(
        artifact_path=None,  # deprecated for `name`, yet without a default
        name=op["name"],
        flavor=SimpleNamespace(__name__=op["flavor"], save_model=save_model),
        run_id=run_id,
        validate_serving_input=False,
    )


def _register(mlflow: Any, client: Any, run_id: str, name: str, model: str) -> None:
    """The run's MLflow Model in the Model Registry as `name`, a version once per run."""
    found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if found:
        version = int(found[0].version)
    else:
        version = int(mlflow.register_model(f"runs:/{run_id}/{model}", name).version)
    log.info("%s: model registered as %s version %d", name, name, version)


class LiveSender:
    """Sends a stage's entry from a thread while the stage writes it."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self.failure: SendError | None = None
        self._run_id: str | None = None
        self._wake = threading.Condition()
        self._started = threading.Event()  # the run is known (or cannot be)
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="dl4cv-tracking", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        with self._wake:
            self._wake.notify()

    def run_id(self) -> str | None:
        """The MLflow run's id, once the store made or found it; None if it could not."""
        self._started.wait()
        return self._run_id

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._closing and self.entry.pending() == 0:
                    self._wake.wait()
                closing = self._closing
            try:
                self._send()
            except SendError as exc:
                self.failure = exc
                self._started.set()
                return
            self._started.set()
            if closing and self.entry.pending() == 0:
                return

    def close(self) -> str | None:
        """Wait for the rest to be sent; one more try if the store refused it during the stage
        (it may be back), none if it did not answer (that would cost another timeout).
        Returns why something is left unsent, or None."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join()
        if self.failure is not None and not self.failure.timed_out:
            try:
                self._send()
                self.failure = None
            except SendError as exc:
                self.failure = exc
        return None if self.failure is None else str(self.failure)

    def _send(self) -> None:
        try:
            _send_chain(self.entry)
        finally:
            self._run_id = self.entry.progress.run_id


def _send_chain(entry: Entry) -> None:
    """Send `entry`, after any older entry of the same run that a killed stage left unsent
    (its epochs come first)."""
    record = entry.start()["record"]
    for older in entries():
        if older.key >= entry.key:
            break
        if (
            (older.pending() or not older.closed())
            and older.start()["record"] == record
            and older.acquire()
        ):
            try:
                send(older)
                older.remove()
            finally:
                older.release()
    send(entry, live=True)

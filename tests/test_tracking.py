"""MLflow tracking against a real sqlite store: run naming, reopening, params, metrics, files."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import keras
import numpy as np
import pytest
from mlflow import MlflowClient

from dl4cv import tracking
from dl4cv.config import ModelSpec, OptimizerSpec, parse_params
from dl4cv.training.callbacks import EpochStats, MLflowMetrics
from tests.conftest import toy_params


@pytest.fixture
def store(in_tmp: Path, mlflow_store: str) -> MlflowClient:
    """A fresh sqlite store, run from an empty folder (artifacts land in ./mlartifacts)."""
    return MlflowClient(mlflow_store)


def runs_named(client: MlflowClient, name: str) -> list:
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT_NAME)
    return client.search_runs(
        [experiment.experiment_id], filter_string=f"attributes.run_name = '{name}'"
    )


def test_run_is_named_by_the_experiment_id(store, in_tmp):
    with tracking.run("shallownet_animals") as active:
        run_id = active.run_id
    run = store.get_run(run_id)
    assert run.info.run_name == "shallownet_animals"
    assert run.info.status == "FINISHED"
    experiment = store.get_experiment(run.info.experiment_id)
    assert experiment.name == "dl4cv"
    # With sqlite, artifacts live beside the database, in the folder the stage runs from.
    assert experiment.artifact_location == (in_tmp / "mlartifacts").as_uri()
    assert [r.info.run_id for r in runs_named(store, "shallownet_animals")] == [run_id]
    assert list((in_tmp / "mlflow-journal").iterdir()) == []  # sent: nothing kept


def test_reopening_logs_into_the_same_run(store):
    with tracking.run("lenet_mnist") as active:
        run_id = active.run_id
        tracking.log_metrics({"loss": 1.0}, step=1)
    with tracking.run("lenet_mnist", run_id=run_id) as again:
        assert again.run_id == run_id
        tracking.log_metrics({"loss": 0.5}, step=2)
        tracking.log_metrics({"test_accuracy": 0.9})
    run = store.get_run(run_id)
    assert run.info.run_name == "lenet_mnist"
    assert run.data.metrics["test_accuracy"] == 0.9
    history = store.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5)]
    assert len(runs_named(store, "lenet_mnist")) == 1


def test_reopening_a_run_the_store_lacks_starts_a_new_one(store, caplog):
    """A resume state may name a run of another (or a wiped) store, or a deleted run."""
    with tracking.run("lenet_mnist") as active:
        deleted = active.run_id
    store.delete_run(deleted)
    for missing in ("0123456789abcdef0123456789abcdef", deleted):
        with (
            caplog.at_level("WARNING", logger="dl4cv.tracking"),
            tracking.run("lenet_mnist", run_id=missing) as active,
        ):
            tracking.log_metrics({"loss": 0.5}, step=1)
        assert active.run_id != missing
        assert missing in caplog.text
        run = store.get_run(active.run_id)
        assert run.info.run_name == "lenet_mnist"
        assert run.data.metrics == {"loss": 0.5}
    assert len(runs_named(store, "lenet_mnist")) == 2  # the deleted run is not listed


def test_each_training_is_a_new_run(store):
    ids = []
    for _ in range(2):
        with tracking.run("knn_animals") as active:
            ids.append(active.run_id)
    assert ids[0] != ids[1]
    assert sorted(r.info.run_id for r in runs_named(store, "knn_animals")) == sorted(ids)


def test_a_failing_stage_marks_its_run_failed(store):
    with pytest.raises(RuntimeError), tracking.run("minivggnet_cifar10") as active:
        run_id = active.run_id
        raise RuntimeError("killed")
    assert store.get_run(run_id).info.status == "FAILED"


def test_flatten_nested_dataclasses():
    exp = parse_params(
        toy_params(
            {
                "e": {
                    "chapter": 15,
                    "dataset": "d",
                    "model": {"name": "minivggnet", "batch_norm": False},
                    "optimizer": {"learning_rate": 0.01, "decay": 0.00025, "momentum": 0.9},
                    "train": {"epochs": 3},
                }
            },
            dataset="d",
        )
    ).experiment("e")
    flat = tracking.flatten("", exp)
    assert flat == tracking.flatten("", dataclasses.asdict(exp))
    assert flat["id"] == "e"
    assert flat["chapter"] == 15
    assert flat["model.name"] == "minivggnet"
    assert flat["model.batch_norm"] is False
    assert flat["optimizer.decay"] == 0.00025
    assert flat["optimizer.momentum"] == 0.9
    assert flat["train.epochs"] == 3
    assert flat["evaluate.checkpoint"] == "final"
    assert all(not isinstance(v, dict) for v in flat.values())
    n_leaves = sum(
        len(dataclasses.fields(getattr(exp, f.name)))
        if dataclasses.is_dataclass(getattr(exp, f.name))
        else 1
        for f in dataclasses.fields(exp)
    )
    assert len(flat) == n_leaves


def test_flatten_with_prefix_and_plain_values():
    nested = {"model": ModelSpec("knn", n_neighbors=3), "opt": {"sgd": OptimizerSpec()}, "x": None}
    flat = tracking.flatten("exp", nested)
    assert flat["exp.model.n_neighbors"] == 3
    assert flat["exp.opt.sgd.learning_rate"] == 0.01
    assert flat["exp.x"] is None
    assert tracking.flatten("k", 5) == {"k": 5}
    assert tracking.flatten("k", [1, 2]) == {"k": [1, 2]}


def test_params_metrics_tags_and_artifacts(store, in_tmp):
    (in_tmp / "report.txt").write_text("hello")
    with tracking.run("exp") as active:
        run_id = active.run_id
        tracking.log_params({"model.name": "shallownet", "subset.max_train": None, "seed": 42})
        tracking.set_tags({"keras_backend": "tensorflow"})
        tracking.log_metrics({"n": 3, "acc": np.float32(0.5)})
        tracking.log_artifact(in_tmp / "report.txt", "report")
        tracking.log_artifact(in_tmp / "report.txt")
        tracking.log_artifact(in_tmp / "missing.png", "report")  # absent: skipped, no error
    run = store.get_run(run_id)
    assert run.data.params == {"model.name": "shallownet", "subset.max_train": "null", "seed": "42"}
    assert run.data.tags["keras_backend"] == "tensorflow"
    assert run.data.metrics == {"n": 3.0, "acc": 0.5}
    assert [a.path for a in store.list_artifacts(run_id, "report")] == ["report/report.txt"]
    assert "report.txt" in [a.path for a in store.list_artifacts(run_id)]
    local = Path(store.download_artifacts(run_id, "report/report.txt", str(in_tmp / "dl")))
    assert local.read_text() == "hello"
    assert (in_tmp / "mlartifacts").is_dir()


def test_mlflow_metrics_callback_logs_each_epoch(store):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((12, 4), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    with tracking.run("cb") as active:
        history = model.fit(
            x,
            y,
            validation_data=(x, y),
            batch_size=4,
            epochs=3,
            callbacks=[EpochStats(), MLflowMetrics()],
            verbose=0,
        ).history
    run_id = active.run_id
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds"):
        logged = store.get_metric_history(run_id, key)
        assert [m.step for m in logged] == [1, 2, 3], key
        assert [m.value for m in logged] == pytest.approx(history[key]), key


def test_mlflow_metrics_callback_skips_non_numbers(store):
    callback = MLflowMetrics()
    with tracking.run("cb") as active:
        callback.on_epoch_end(4, {"loss": 0.25, "note": "text", "flag": None})
    run = store.get_run(active.run_id)
    assert run.data.metrics == {"loss": 0.25}
    assert [m.step for m in store.get_metric_history(active.run_id, "loss")] == [5]


def test_tracking_uri_defaults_to_sqlite_in_cwd(in_tmp, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri() == f"sqlite:///{in_tmp / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://db/mlflow")
    assert tracking.tracking_uri() == "postgresql://db/mlflow"


def test_git_commit(in_tmp, monkeypatch):
    assert tracking.git_commit() == "unknown"  # not a git repository
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert re.fullmatch(r"[0-9a-f]{40}", tracking.git_commit())


def test_runs_of_dvc_temp_experiments_go_to_the_repository_store(tmp_path, monkeypatch):
    """`dvc exp run --temp/--queue` runs stages in .dvc/tmp/exps/<name>: same store as the repo."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    workspace = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc123"
    workspace.mkdir(parents=True)
    monkeypatch.chdir(workspace)
    assert tracking.repo_root() == tmp_path
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    assert tracking.repo_root() == tmp_path


def dead_store() -> str:
    """The address of a port nothing listens on (bound, never accepting, then closed)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_store_that_cannot_be_reached_keeps_the_record_until_sync(
    in_tmp, mlflow_store, monkeypatch, caplog
):
    """The stage ends at once with one WARNING line; `sync` sends the record with its original
    steps and times into one FINISHED run, and a second `sync` sends nothing."""
    from dl4cv.tracking.__main__ import main

    (in_tmp / "report.txt").write_text("kept")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead_store())
    with caplog.at_level("WARNING", logger="dl4cv.tracking"), tracking.run("lenet_mnist") as active:
        tracking.log_params({"seed": 42})
        for step in (1, 2, 3):
            tracking.log_metrics({"val_accuracy": step / 10}, step=step)
        tracking.log_artifact(in_tmp / "report.txt", "report")
        (in_tmp / "report.txt").write_text("changed after logging")
    assert active.run_id is None
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "python -m dl4cv.tracking sync" in warnings[0], warnings
    assert [e.start()["name"] for e in tracking.pending()] == ["lenet_mnist"]

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)
    assert main(["sync"]) == 0
    client = MlflowClient(mlflow_store)
    (run,) = runs_named(client, "lenet_mnist")
    assert run.info.status == "FINISHED" and run.data.params == {"seed": "42"}
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert history[0].timestamp < run.info.end_time  # logged when the stage ran, not at sync
    local = client.download_artifacts(run.info.run_id, "report/report.txt", str(in_tmp / "dl"))
    assert Path(local).read_text() == "kept"  # the file as it was when logged
    assert tracking.pending() == []
    assert main(["sync"]) == 0
    assert len(runs_named(client, "lenet_mnist")) == 1
    assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 3


def test_sync_ends_a_killed_stages_run_and_a_resume_continues_it(in_tmp, store):
    """An entry its stage never closed (killed) is sent and its run marked KILLED; a resumed
    stage that names the record reopens that run and ends it FINISHED."""
    from dl4cv.tracking.__main__ import main
    from dl4cv.tracking.journal import Entry, now_ms

    entry = Entry.create()  # what a killed stage leaves: a start, an epoch, no end
    entry.append(
        {"op": "start", "name": "killed", "record": entry.key, "run_id": None,
         "time": now_ms(), "tags": {}}
    )  # fmt: skip
    entry.append({"op": "metrics", "metrics": [["loss", 1.0, now_ms(), 1]]})
    entry.release()
    assert main(["sync"]) == 0
    (run,) = runs_named(store, "killed")
    assert run.info.status == "KILLED"
    with tracking.run("killed", record=entry.key) as resumed:
        tracking.log_metrics({"loss": 0.5}, step=2)
    assert resumed.run_id == run.info.run_id
    assert store.get_run(run.info.run_id).info.status == "FINISHED"
    steps = [m.step for m in store.get_metric_history(run.info.run_id, "loss")]
    assert sorted(steps) == [1, 2]


def test_a_store_that_never_answers_costs_one_timeout(in_tmp, monkeypatch, caplog):
    """A server that accepts connections and never replies (hung, not dead): the run ends within
    one call's timeout, keeps its record and says so once."""
    import socket
    import time

    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)  # connections queue up; nothing ever reads them
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{hung.getsockname()[1]}")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
        started = time.monotonic()
        with caplog.at_level("WARNING", logger="dl4cv.tracking"), tracking.run("hung") as active:
            for step in (1, 2, 3):
                tracking.log_metrics({"loss": 1 / step}, step=step)
        seconds = time.monotonic() - started
    assert active.run_id is None
    assert seconds < 3.8, seconds  # one 2 s timeout: not one per call (5 calls), nor a retry
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "timed out" in warnings[0], warnings
    assert [e.start()["name"] for e in tracking.pending()] == ["hung"]

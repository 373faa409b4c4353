"""The train and evaluate stages end to end on a tiny separable dataset, tracked in real MLflow."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from types import SimpleNamespace

import joblib
import keras
import numpy as np
import pytest
from mlflow import MlflowClient

from dl4cv import tracking
from dl4cv.config import ConfigError, Params, SplitSpec, Subset, parse_params
from dl4cv.data.formats import ProcessedDataset, write_rejects
from dl4cv.data.loaders import Reject
from dl4cv.data.sources import Fetched, sha256sum
from dl4cv.data.splits import Split, make_split
from dl4cv.pipeline import evaluate, train
from dl4cv.runtime import backend, paths
from dl4cv.runtime.fileio import read_json, write_json
from dl4cv.training.inputs import scale_pixels
from dl4cv.training.predictions import PREDICT_BATCH, PREDICTIONS_FILE, Predictions
from dl4cv.training.state import BEST_FILE, STATE_FILE
from tests.conftest import blob_image, migrated_store

DATASET = "toy"
CLASSES = ["cats", "dogs", "panda"]
PER_CLASS = 16
SIZE = 16
EPOCHS = 3
KNN, SHALLOW = "knn_toy", "shallownet_toy"
REPORT_FILES = (
    "metrics.json",
    "report.txt",
    "confusion_matrix.png",
    "curves.png",
    "learning_rate.png",
    "history.csv",
)
PER_EPOCH = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds")

RAW_PARAMS = {
    "profile": "book",
    "seed": 42,
    "preprocess": {},
    "datasets": {
        DATASET: {
            "source": {"format": "image-folder-zip", "root": "toy"},
            "image": {"width": SIZE, "height": SIZE, "channels": 3},
            "split": {"method": "stratified", "test_size": 0.25, "random_state": 42},
        }
    },
    "experiments": {
        KNN: {"chapter": 7, "dataset": DATASET, "model": {"name": "knn", "n_neighbors": 1}},
        SHALLOW: {
            "chapter": 12,
            "dataset": DATASET,
            "model": {"name": "shallownet"},
            "optimizer": {"name": "sgd", "learning_rate": 0.05},
            # Saved after every epoch: the kill tests count the epochs a kill leaves.
            "train": {"batch_size": 8, "epochs": EPOCHS, "checkpoint_interval_s": 0},
        },
    },
}


def make_params(**experiment_changes: dict) -> Params:
    """The tiny params; `shallownet_toy={"evaluate": {...}}` merges into an experiment."""
    raw = copy.deepcopy(RAW_PARAMS)
    for exp_id, changes in experiment_changes.items():
        raw["experiments"][exp_id].update(changes)
    return parse_params(raw, source="test params")


def write_project(root: Path) -> Fetched:
    """What the download, preprocess and split stages leave for train, under `root`."""
    labels = np.repeat(np.arange(len(CLASSES)), PER_CLASS)
    images = np.stack([blob_image(int(y), size=SIZE, seed=i) for i, y in enumerate(labels)]).astype(
        np.uint8
    )
    ids = [f"{CLASSES[y]}/{i:04d}.jpg" for i, y in enumerate(labels)]
    ProcessedDataset(images, labels, CLASSES, ids, [""] * len(labels)).save(
        root / paths.processed_file(DATASET)
    )
    write_rejects(
        root / paths.rejects_file(DATASET), [Reject("toy/cats/broken.jpg", "cannot decode")]
    )
    spec = SplitSpec("stratified", 0.25, random_state=42)
    split = make_split(labels, [""] * len(labels), spec)
    write_json(
        root / paths.split_file(DATASET),
        split.to_json(DATASET, spec, Subset(), labels, CLASSES),
    )
    raw = root / paths.raw_dir(DATASET)
    raw.mkdir(parents=True)
    (raw / "toy.zip").write_bytes(b"the verified archive")
    fetched = Fetched(
        DATASET,
        "toy.zip",
        sha256sum(raw / "toy.zip"),
        "mirror",
        "/mirror/toy.zip",
        {"format": "image-folder-zip", "root": "toy"},
    )
    fetched.write(raw)
    return fetched


def run_named(client: MlflowClient, name: str) -> list:
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT_NAME)
    return client.search_runs(
        [experiment.experiment_id],
        filter_string=f"attributes.run_name = '{name}'",
        order_by=["attributes.start_time ASC"],
    )


def artifacts(client: MlflowClient, run_id: str, folder: str) -> list[str]:
    return sorted(a.path for a in client.list_artifacts(run_id, folder))


def held_out(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The test split's images and labels, read as train reads them."""
    processed = ProcessedDataset.load(root / paths.processed_file(DATASET))
    split = Split.from_json(read_json(root / paths.split_file(DATASET)))
    return processed.images[split.test], processed.labels[split.test]


def outputs(exp_id: str) -> SimpleNamespace:
    """Everything a train + evaluate pair wrote for one experiment, read back from disk."""
    model = paths.model_dir(exp_id)
    report = paths.report_dir(exp_id)
    return SimpleNamespace(
        info=read_json(model / train.RUN_FILE),
        history=read_json(model / train.HISTORY_FILE),
        metrics=read_json(report / "metrics.json"),
        report_text=(report / "report.txt").read_text(),
        history_csv=(report / "history.csv").read_text(),
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    """Train and evaluate both experiments twice with the same params, from a fresh folder."""
    root = tmp_path_factory.mktemp("project")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        shutil.copyfile(migrated_store(tmp_path_factory), root / "mlflow.db")
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        fetched = write_project(Path("."))
        params = make_params()
        runs: dict[str, list] = {KNN: [], SHALLOW: []}
        for _ in range(2):
            for exp_id in (KNN, SHALLOW):
                info = train.run(exp_id, params)
                metrics = evaluate.run(exp_id, params)
                runs[exp_id].append(
                    SimpleNamespace(returned=(info, metrics), **vars(outputs(exp_id)))
                )
        yield SimpleNamespace(
            root=root, client=MlflowClient(uri), fetched=fetched, params=params, runs=runs
        )


def test_shallownet_writes_its_model_and_history(project):
    out = project.root / paths.model_dir(SHALLOW)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [train.FINAL_KERAS, BEST_FILE, PREDICTIONS_FILE, train.HISTORY_FILE, train.RUN_FILE]
    )
    run = project.runs[SHALLOW][-1]
    info = read_json(out / train.RUN_FILE)
    assert run.returned == (info, run.metrics)  # what the stages return is what they wrote
    assert info["experiment"] == SHALLOW
    assert info["epochs"] == EPOCHS
    assert info["backend"] == backend.name()
    # `auto` on a CPU: model.fit in float32, recorded as such, with the compile-epoch time.
    assert (info["runner"], info["dtype_policy"]) == ("keras", "float32")
    assert info["first_epoch_seconds"] == run.history["epoch_seconds"][0]
    assert info["train_seconds"] == pytest.approx(sum(run.history["epoch_seconds"]))
    assert info["wall_seconds"] >= info["train_seconds"]
    for key in PER_EPOCH:
        assert len(run.history[key]) == EPOCHS, key
    state = read_json(project.root / paths.resume_dir(SHALLOW) / STATE_FILE)
    assert state["completed"] == EPOCHS
    assert state["run_id"] == info["run_id"]
    assert state["fingerprint"] == info["fingerprint"]
    assert state["history"] == run.history
    model = keras.models.load_model(out / train.FINAL_KERAS)
    assert model.output_shape == (None, len(CLASSES))
    assert model.input_shape == (None, SIZE, SIZE, 3)


def test_saved_predictions_are_what_the_saved_models_predict(project):
    """predictions.npz, all that evaluate reads, holds the test outputs of model.keras and
    best.keras exactly: as evaluate computed them when it loaded the models itself."""
    out = project.root / paths.model_dir(SHALLOW)
    saved = Predictions.load(out / PREDICTIONS_FILE)
    x_test, y_test = held_out(project.root)
    np.testing.assert_array_equal(saved.y_true, y_test)
    assert saved.classes == CLASSES
    for name, outputs in ((train.FINAL_KERAS, saved.final), (BEST_FILE, saved.best)):
        model = keras.models.load_model(out / name)
        expected = model.predict(scale_pixels(x_test), batch_size=PREDICT_BATCH, verbose=0)
        assert outputs.dtype == np.float32, name
        np.testing.assert_array_equal(outputs, expected, err_msg=name)
    np.testing.assert_allclose(saved.final.sum(axis=1), 1.0, rtol=1e-5)  # softmax


def test_shallownet_report(project):
    run = project.runs[SHALLOW][-1]
    report = project.root / paths.report_dir(SHALLOW)
    for name in REPORT_FILES:
        assert (report / name).stat().st_size > 0, name
    assert (report / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (report / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    m = run.metrics
    assert m["accuracy"] > 0.8  # chance is 1/3 on three balanced classes
    assert m["support"] == len(read_json(project.root / paths.split_file(DATASET))["test"])
    assert m["support"] == PER_CLASS * len(CLASSES) // 4
    assert m["epochs"] == EPOCHS
    assert m["experiment"] == SHALLOW
    assert m["chapter"] == 12
    assert m["profile"] == "book"
    assert m["checkpoint"] == "final"
    assert m["mlflow_run_id"] == run.info["run_id"]
    seconds = run.history["epoch_seconds"]
    assert m["first_epoch_seconds"] == seconds[0]
    assert m["seconds_per_epoch"] == pytest.approx(sum(seconds[1:]) / (EPOCHS - 1))
    assert m["final_val_loss"] == run.history["val_loss"][-1]
    assert m["final_val_accuracy"] == run.history["val_accuracy"][-1]
    assert set(m["per_class"]) == set(CLASSES)
    assert all(name in run.report_text for name in CLASSES)
    assert len(run.history_csv.splitlines()) == 1 + EPOCHS
    # No validation part in the split: the book validates on the test set.
    assert m["final_val_accuracy"] == pytest.approx(m["accuracy"])


def test_shallownet_mlflow_run(project):
    client = project.client
    runs = run_named(client, SHALLOW)
    assert len(runs) == 2  # one run per training
    info = project.runs[SHALLOW][-1].info
    run = client.get_run(info["run_id"])
    assert run.info.run_id == runs[-1].info.run_id
    assert run.info.status == "FINISHED"
    p = run.data.params
    assert p["model.name"] == "shallownet"
    assert p["train.epochs"] == str(EPOCHS)
    assert p["optimizer.learning_rate"] == "0.05"
    assert p["seed"] == "42"
    assert p["profile"] == "book"
    assert (p["split.train"], p["split.val"], p["split.test"]) == ("36", "0", "12")
    history = project.runs[SHALLOW][-1].history
    for key in PER_EPOCH:
        logged = client.get_metric_history(info["run_id"], key)
        assert [m.step for m in logged] == list(range(1, EPOCHS + 1)), key
        assert [m.value for m in logged] == pytest.approx(history[key]), key
    metrics = run.data.metrics
    assert metrics["test_accuracy"] == pytest.approx(project.runs[SHALLOW][-1].metrics["accuracy"])
    assert metrics["test_precision_weighted"] == pytest.approx(
        project.runs[SHALLOW][-1].metrics["precision_weighted"]
    )
    assert metrics["rejected_images"] == 1
    assert metrics["train_seconds"] == pytest.approx(info["train_seconds"])
    tags = run.data.tags
    assert tags["keras_backend"] == backend.name()
    assert tags["dataset.sha256"] == project.fetched.sha256
    assert tags["dataset.origin"] == "mirror"
    assert tags["dataset"] == DATASET
    assert tags["dl4cv.experiment"] == SHALLOW
    assert "resumed_from_epoch" not in tags
    rid = info["run_id"]
    assert artifacts(client, rid, "checkpoints") == ["checkpoints/best.keras"]
    assert {"model/MLmodel", "model/data"} <= set(artifacts(client, rid, "model"))
    assert artifacts(client, rid, "report") == sorted(f"report/{n}" for n in REPORT_FILES)
    assert artifacts(client, rid, "data") == [f"data/{DATASET}-rejects.csv"]


def test_knn_stage(project):
    run = project.runs[KNN][-1]
    out = project.root / paths.model_dir(KNN)
    assert (out / train.FINAL_KNN).is_file()
    assert not (out / train.FINAL_KERAS).exists()
    # k-NN's own labels, as evaluate predicted them from the saved model
    saved = Predictions.load(out / PREDICTIONS_FILE)
    x_test, y_test = held_out(project.root)
    labels = joblib.load(out / train.FINAL_KNN).predict(x_test.reshape(len(x_test), -1))
    np.testing.assert_array_equal(saved.final, labels)
    np.testing.assert_array_equal(saved.y_true, y_test)
    assert saved.best is None and saved.classes == CLASSES
    assert run.history == {}
    assert run.info["epochs"] == 0
    m = run.metrics
    assert m["accuracy"] > 0.8
    assert m["epochs"] == 0
    assert m["seconds_per_epoch"] is None
    assert m["checkpoint"] == "final"
    assert "final_val_accuracy" not in m
    report = project.root / paths.report_dir(KNN)
    for name in REPORT_FILES:
        assert (report / name).stat().st_size > 0, name
    assert run.history_csv.splitlines() == ["epoch"]
    client = project.client
    assert len(run_named(client, KNN)) == 2
    mlrun = client.get_run(run.info["run_id"])
    assert mlrun.data.params["model.name"] == "knn"
    assert mlrun.data.params["model.n_neighbors"] == "1"
    assert mlrun.data.metrics["test_accuracy"] == pytest.approx(m["accuracy"])
    assert "loss" not in mlrun.data.metrics
    assert mlrun.data.tags["dataset.sha256"] == project.fetched.sha256
    assert "model/MLmodel" in artifacts(client, run.info["run_id"], "model")
    assert artifacts(client, run.info["run_id"], "checkpoints") == []
    assert "report/curves.png" in artifacts(client, run.info["run_id"], "report")


@pytest.mark.parametrize("exp_id", [KNN, SHALLOW])
def test_same_params_same_results(project, exp_id):
    first, second = project.runs[exp_id]
    assert first.info["run_id"] != second.info["run_id"]
    assert first.info["fingerprint"] == second.info["fingerprint"]
    timing = ("train_seconds", "seconds_per_epoch", "first_epoch_seconds", "mlflow_run_id")
    same = {k: v for k, v in first.metrics.items() if k not in timing}
    assert same == {k: v for k, v in second.metrics.items() if k not in timing}
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert first.history.get(key) == second.history.get(key), key
    assert first.report_text == second.report_text


# Resume through the stage, and evaluation of the best checkpoint.


class Killed(Exception):
    """Stands for the training process dying between two epochs."""


def killing_metrics_callback(after_epochs: int):
    """MLflowMetrics that dies as epoch `after_epochs` + 1 begins, when `after_epochs` epochs
    are both logged and checkpointed (whichever of the two callbacks runs first)."""
    from dl4cv.training.callbacks import MLflowMetrics

    class KillingMLflowMetrics(MLflowMetrics):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            if epoch == after_epochs:
                raise Killed(f"killed after epoch {epoch}")

    return KillingMLflowMetrics


@pytest.fixture
def fresh_project(in_tmp: Path, mlflow_store: str) -> SimpleNamespace:
    fetched = write_project(in_tmp)
    return SimpleNamespace(root=in_tmp, client=MlflowClient(mlflow_store), fetched=fetched)


def test_killed_trainings_resume_only_with_the_same_params(fresh_project, monkeypatch):
    """A killed training is resumed into its own MLflow run; a state left by other params is
    not. The resumed experiment is then evaluated on its best checkpoint."""
    client = fresh_project.client
    other = make_params()
    params = make_params(**{SHALLOW: {"evaluate": {"checkpoint": "best"}}})  # another fingerprint

    # Params `other` die after epoch 1; the params under test die after epoch 2.
    for exp_params, epochs in ((other, 1), (params, 2)):
        with monkeypatch.context() as mp:
            mp.setattr("dl4cv.training.callbacks.MLflowMetrics", killing_metrics_callback(epochs))
            with pytest.raises(Killed):
                train.run(SHALLOW, exp_params)
        state = read_json(paths.resume_dir(SHALLOW) / STATE_FILE)
        assert state["completed"] == epochs
        assert len(state["history"]["loss"]) == epochs
        assert client.get_run(state["run_id"]).info.status == "FAILED"
    killed_run = state["run_id"]
    # Resuming other's state would have reopened its run: a new run proves a fresh start.
    first_run = run_named(client, SHALLOW)[0].info.run_id
    assert first_run != killed_run
    assert "model.name" in client.get_run(killed_run).data.params  # params logged afresh

    info = train.run(SHALLOW, params)
    assert info["run_id"] == killed_run
    assert info["epochs"] == EPOCHS
    history = read_json(paths.model_dir(SHALLOW) / train.HISTORY_FILE)
    assert all(len(history[k]) == EPOCHS for k in PER_EPOCH)
    assert history["loss"][:2] == state["history"]["loss"]
    assert info["train_seconds"] == pytest.approx(sum(history["epoch_seconds"]))
    run = client.get_run(killed_run)
    assert run.info.status == "FINISHED"
    assert run.data.tags["resumed_from_epoch"] == "2"
    assert run.data.params["evaluate.checkpoint"] == "best"
    assert len(run_named(client, SHALLOW)) == 2
    logged = client.get_metric_history(killed_run, "loss")
    assert [m.step for m in logged] == [1, 2, 3]
    assert [m.value for m in logged] == pytest.approx(history["loss"])
    assert artifacts(client, killed_run, "checkpoints") == ["checkpoints/best.keras"]
    assert "model/MLmodel" in artifacts(client, killed_run, "model")

    # Evaluate reads models/<exp>/model/ only (no dataset), and there the best outputs: the
    # final ones, made all wrong, would score 0.
    shutil.rmtree("data")
    saved = Predictions.load(paths.model_dir(SHALLOW) / PREDICTIONS_FILE)
    wrong = np.roll(np.eye(len(CLASSES), dtype=np.float32)[saved.y_true], 1, axis=1)
    Predictions(saved.y_true, saved.classes, wrong, saved.best).save(
        paths.model_dir(SHALLOW) / PREDICTIONS_FILE
    )
    metrics = evaluate.run(SHALLOW, params)
    assert metrics["checkpoint"] == "best"
    assert metrics["accuracy"] > 0.8
    assert metrics["mlflow_run_id"] == killed_run
    assert read_json(paths.report_dir(SHALLOW) / "metrics.json") == metrics
    assert client.get_run(killed_run).data.metrics["test_accuracy"] == metrics["accuracy"]


def test_a_killed_training_resumes_when_its_mlflow_run_is_gone(
    fresh_project, monkeypatch, tmp_path_factory
):
    """models/<exp>/last is kept by DVC, the MLflow store is not: a state naming a run the
    store does not have must still resume, into a new run that gets the params."""
    params = make_params()
    with monkeypatch.context() as mp:
        mp.setattr("dl4cv.training.callbacks.MLflowMetrics", killing_metrics_callback(2))
        with pytest.raises(Killed):
            train.run(SHALLOW, params)
    lost_run = read_json(paths.resume_dir(SHALLOW) / STATE_FILE)["run_id"]

    new_store = fresh_project.root / "new-store.db"
    shutil.copyfile(migrated_store(tmp_path_factory), new_store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{new_store}")
    info = train.run(SHALLOW, params)
    assert info["run_id"] != lost_run
    assert info["epochs"] == EPOCHS
    history = read_json(paths.model_dir(SHALLOW) / train.HISTORY_FILE)
    assert len(history["loss"]) == EPOCHS
    client = MlflowClient(f"sqlite:///{new_store}")
    run = client.get_run(info["run_id"])
    assert run.info.run_name == SHALLOW
    assert run.data.tags["resumed_from_epoch"] == "2"
    assert run.data.params["model.name"] == "shallownet"
    assert [m.step for m in client.get_metric_history(info["run_id"], "loss")] == [3]
    assert read_json(paths.resume_dir(SHALLOW) / STATE_FILE)["run_id"] == info["run_id"]


def test_best_checkpoint_without_saved_best_outputs_names_the_experiment(in_tmp):
    """A training that kept no best checkpoint cannot be evaluated on it: a one-line config
    error, before any MLflow run is touched."""
    model = paths.model_dir(SHALLOW)
    labels = np.array([0, 1, 2])
    Predictions(labels, CLASSES, np.eye(3, dtype=np.float32)).save(model / PREDICTIONS_FILE)
    write_json(model / train.RUN_FILE, {"run_id": "no-such-run", "epochs": 0})
    write_json(model / train.HISTORY_FILE, {})
    params = make_params(**{SHALLOW: {"evaluate": {"checkpoint": "best"}}})
    with pytest.raises(ConfigError, match=rf"^experiments\.{SHALLOW}\.evaluate\.checkpoint: "):
        evaluate.run(SHALLOW, params)
    assert not paths.report_dir(SHALLOW).exists()

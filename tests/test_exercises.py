"""The `exercise` stage (ch 8-11, 19): each kind run through the pipeline on small real data,
its record (metrics.json, report.txt, plots/) and its MLflow run; and the params schema."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from sklearn.datasets import load_digits

from dl4cv.config import ConfigError, SplitSpec, Subset, load_params, parse_params
from dl4cv.data.formats import ProcessedDataset
from dl4cv.data.splits import make_split
from dl4cv.pipeline import exercise as stage
from dl4cv.runtime.fileio import write_json
from dl4cv.runtime.paths import processed_file, report_dir, split_file
from dl4cv.tracking import EXPERIMENT_NAME
from tests.conftest import REPO, blob_image, toy_params

COMMON_KEYS = {"experiment", "chapter", "profile", "mlflow_run_id", "wall_seconds"}
BOOK_IDS = {
    "linear_scoring": "linear_scoring",
    "losses_worked": "losses_worked",
    "gd_blobs": "gradient_descent",
    "sgd_blobs": "gradient_descent",
    "regularization_none": "regularization",
    "regularization_l1": "regularization",
    "regularization_l2": "regularization",
    "perceptron_or": "perceptron",
    "perceptron_and": "perceptron",
    "perceptron_xor": "perceptron",
    "nn_xor": "neural_network",
    "nn_digits": "neural_network",
    "convolutions": "convolutions",
    "visualize_lenet": "visualize",
}
ANIMALS = ["cats", "dogs", "panda"]
BLOBS = {
    "alpha": 0.01,
    "epochs": 100,
    "blobs": {
        "n_samples": 1000,
        "n_features": 2,
        "centers": 2,
        "cluster_std": 1.5,
        "random_state": 1,
    },
    "split": {"method": "random", "test_size": 0.5, "random_state": 42},
}
LOSSES = {
    "classes": ["dog", "cat", "panda"],
    "hinge_scores": [[4.26, 1.33, -1.01], [3.76, -1.20, -3.81], [-2.37, 1.03, -2.27]],
    "hinge_labels": ["dog", "cat", "panda"],
    "softmax_scores": [-3.44, 1.16, 3.91],
    "softmax_label": "panda",
}


def raw_params(exercises: dict) -> dict:
    """Toy params declaring `animals` and `digits` (the datasets exercises read)."""
    raw = toy_params({}, dataset="digits")
    raw["datasets"]["animals"] = {
        "source": {"format": "image-folder-zip", "root": "animals"},
        "image": {"width": 32, "height": 32, "channels": 3},
        "split": {"method": "stratified"},
    }
    raw["exercises"] = exercises
    return raw


def run(exercise_id: str, kind: str, settings: dict, dataset: str | None = None) -> dict:
    entry = {"chapter": 8, "kind": kind, "settings": settings}
    if dataset:
        entry["dataset"] = dataset
    return stage.run(exercise_id, parse_params(raw_params({exercise_id: entry})))


def record(exercise_id: str) -> tuple[dict, str, set[str]]:
    """metrics.json, report.txt and the file names under plots/, after the common checks."""
    out = report_dir(exercise_id)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= COMMON_KEYS
    assert metrics["experiment"] == exercise_id and metrics["profile"] == "book"
    report = (out / "report.txt").read_text()
    assert report.startswith(f"{exercise_id} (ch ")
    return metrics, report, {p.name for p in (out / "plots").iterdir()}


def mlflow_run(exercise_id: str, run_id: str):
    client = MlflowClient()
    found = client.get_run(run_id)
    assert found.info.run_name == exercise_id and found.info.status == "FINISHED"
    assert found.info.experiment_id == client.get_experiment_by_name(EXPERIMENT_NAME).experiment_id
    return client, found


@pytest.fixture
def animals(in_tmp: Path) -> ProcessedDataset:
    """A small processed Animals: 20 real JPEG-decoded 32x32 images a class, class in a corner."""
    images, labels, ids = [], [], []
    for label, name in enumerate(ANIMALS):
        for i in range(20):
            ok, buf = cv2.imencode(".jpg", blob_image(label, 32, seed=100 * label + i))
            images.append(cv2.imdecode(buf, cv2.IMREAD_COLOR))
            labels.append(label)
            ids.append(f"animals/{name}/{name}_{i:05d}.jpg")
    data = ProcessedDataset(np.stack(images), np.array(labels), ANIMALS, ids, [""] * len(ids))
    data.save(processed_file("animals"))
    return data


@pytest.fixture
def digits(in_tmp: Path) -> ProcessedDataset:
    """400 of scikit-learn's digits processed as the pipeline does, with their split file."""
    bunch = load_digits()
    images = np.rint(bunch.images[:400] * (255 / 16)).astype(np.uint8)[..., np.newaxis]
    labels = bunch.target[:400]
    classes = [str(c) for c in range(10)]
    data = ProcessedDataset(images, labels, classes, [f"all/{i}" for i in range(400)], [""] * 400)
    data.save(processed_file("digits"))
    spec = SplitSpec(method="random")
    split = make_split(labels, data.origin, spec)
    write_json(split_file("digits"), split.to_json("digits", spec, Subset(), labels, classes))
    return data


# --- params.yaml --------------------------------------------------------------------------------


def test_params_yaml_declares_every_book_exercise() -> None:
    params = load_params(REPO / "params.yaml")
    assert {k: e.kind for k, e in params.exercises.items()} == BOOK_IDS
    penalties = {
        params.exercise(f"regularization_{p}").settings.penalty for p in ("none", "l1", "l2")
    }
    assert penalties == {"none", "l1", "l2"}
    assert params.exercise("regularization_l2").settings.split.random_state == 5
    assert params.exercise("nn_xor").settings.baseline_layers == (2, 1)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    quick = parse_params({**raw, "profile": "quick"})
    assert (
        quick.exercise("nn_digits").settings.epochs < params.exercise("nn_digits").settings.epochs
    )
    assert quick.exercise("nn_xor").settings.epochs == 20000  # fast: the book's own


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.update(kind="svm"), "ex.kind: expected one of ["),
        (
            lambda e: e["settings"].update(alfa=0.1),
            "ex.settings.alfa: unknown key; allowed keys here: ['alpha', 'epochs', 'table']",
        ),
        (lambda e: e["settings"].update(epochs="ten"), "ex.settings.epochs: expected an integer"),
        (lambda e: e["settings"].update(table="nand"), "ex.settings.table: expected one of"),
        (lambda e: e["settings"].update(alpha=0), "ex.settings.alpha: expected a number > 0"),
        (lambda e: e.update(dataset="digits"), "ex.dataset: a perceptron exercise reads no"),
        (lambda e: e.pop("settings"), "ex.settings: missing required key"),
        (
            lambda e: e.update(quick={"settings": {"epoch": 2}}),
            "ex.settings.epoch: unknown key",  # found with the quick overrides applied
        ),
    ],
)
def test_bad_exercise_params_name_the_key(change, message: str) -> None:
    entry = {"chapter": 10, "kind": "perceptron", "settings": {"table": "or", "alpha": 0.1}}
    entry["settings"]["epochs"] = 2
    change(entry)
    with pytest.raises(ConfigError) as error:
        parse_params(raw_params({"ex": entry}))
    assert f"exercises.{message}" in str(error.value)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {
                "kind": "regularization",
                "settings": {"penalty": "l2", "split": {"method": "random"}},
            },
            "exercises.ex.dataset: a regularization exercise reads a dataset",
        ),
        (
            {"kind": "linear_scoring", "dataset": "cats", "settings": {"image_class": "dogs"}},
            "exercises.ex.dataset: 'cats' is not one of the declared datasets",
        ),
        (
            {
                "kind": "neural_network",
                "dataset": "digits",
                "settings": {"layers": [64, 10], "alpha": 0.1, "epochs": 1, "table": "xor"},
            },
            "exercises.ex.settings.table: a neural_network exercise learns either",
        ),
        (
            {"kind": "losses_worked", "settings": {**LOSSES, "softmax_label": "koala"}},
            "exercises.ex.settings.softmax_label: 'koala' is not one of classes",
        ),
    ],
)
def test_exercise_params_checked_across_keys(entry: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_params(raw_params({"ex": {"chapter": 9, **entry}}))
    assert message in str(error.value)


def test_unknown_exercise_id() -> None:
    with pytest.raises(ConfigError, match="unknown exercise 'nn_mnist'"):
        parse_params(raw_params({})).exercise("nn_mnist")


# --- ch 8 ---------------------------------------------------------------------------------------


def test_losses_worked_gives_the_book_figures(in_tmp, mlflow_store) -> None:
    found = run("losses_worked", "losses_worked", copy.deepcopy(LOSSES))
    metrics, report, plots = record("losses_worked")
    assert metrics == found
    assert [round(metrics["hinge"][f"image_{i}"], 2) for i in (1, 2, 3)] == [0.0, 5.96, 5.20]
    assert round(metrics["hinge_mean"], 2) == 3.72
    assert round(100 * metrics["softmax_true_class_probability"], 2) == 93.93
    assert metrics["softmax"]["panda"] == metrics["softmax_true_class_probability"]
    assert "true class panda: 93.93%" in report
    assert plots == {"losses.png"}
    client, mlrun = mlflow_run("losses_worked", metrics["mlflow_run_id"])
    assert mlrun.data.params["kind"] == "losses_worked"
    assert mlrun.data.params["settings.softmax_label"] == "panda"
    assert mlrun.data.metrics["hinge_mean"] == pytest.approx(3.72)
    assert {a.path for a in client.list_artifacts(mlrun.info.run_id, "report")} == {
        "report/metrics.json",
        "report/report.txt",
        "report/plots",
    }


def test_linear_scoring_scores_the_chosen_image_with_the_book_seed(animals, mlflow_store) -> None:
    run(
        "linear_scoring",
        "linear_scoring",
        {"image_class": "dogs", "image_index": 2, "seed": 1},
        "animals",
    )
    metrics, report, plots = record("linear_scoring")
    # np.random.seed(1); W = randn(3, 3072); b = randn(3): the book's draw, on the 3rd dog.
    rng = np.random.RandomState(1)
    W, b = rng.randn(3, 32 * 32 * 3), rng.randn(3)
    expected = W @ animals.images[22].reshape(-1).astype(np.float64) + b
    assert [metrics["scores"][c] for c in ANIMALS] == pytest.approx(expected.tolist())
    assert metrics["predicted_index"] == int(np.argmax(expected))
    assert metrics["true_index"] == 1
    assert metrics["correct"] == int(np.argmax(expected) == 1)
    assert "animals/dogs/dogs_00002.jpg" in report
    assert plots == {"linear_scoring.png"}
    with pytest.raises(ConfigError, match=r"exercises.linear_scoring.settings.image_index: .* 20"):
        run(
            "linear_scoring",
            "linear_scoring",
            {"image_class": "dogs", "image_index": 20},
            "animals",
        )


# --- ch 9 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [None, 32])
def test_gradient_descent_on_the_book_blobs(in_tmp, mlflow_store, batch_size) -> None:
    run("gd", "gradient_descent", {**copy.deepcopy(BLOBS), "batch_size": batch_size})
    metrics, report, plots = record("gd")
    assert metrics["epochs"] == 100
    assert metrics["final_loss"] < metrics["initial_loss"] / 10
    # The book's "1.00" is a two-decimal weighted precision: one miss in 500 still prints it.
    assert round(metrics["precision_weighted"], 2) == 1.0 and metrics["accuracy"] >= 0.99
    assert plots == {"loss.png", "decision_boundary.png", "history.csv"}
    with (report_dir("gd") / "plots" / "history.csv").open() as fh:
        losses = [float(row["loss"]) for row in csv.DictReader(fh)]
    assert len(losses) == 100 and losses[0] == metrics["initial_loss"]
    if batch_size is None:
        assert np.all(np.diff(losses) <= 0), "full-batch loss never rises at alpha 0.01"
    client, mlrun = mlflow_run("gd", metrics["mlflow_run_id"])
    history = client.get_metric_history(mlrun.info.run_id, "loss")
    assert [m.step for m in history] == list(range(1, 101))
    assert [m.value for m in history] == pytest.approx(losses)


def test_regularization_runs_one_record_per_penalty(animals, mlflow_store) -> None:
    common = {
        "loss": "log_loss",
        "max_iter": 10,
        "eta0": 0.01,
        "random_state": 42,
        "split": {"method": "random", "test_size": 0.25, "random_state": 5},
    }
    exercises = {
        f"regularization_{p}": {
            "chapter": 9,
            "kind": "regularization",
            "dataset": "animals",
            "settings": {**common, "penalty": p},
        }
        for p in ("none", "l1", "l2")
    }
    params = parse_params(raw_params(exercises))
    run_ids = set()
    for exercise_id in exercises:
        stage.run(exercise_id, params)
        metrics, report, plots = record(exercise_id)
        assert (metrics["train_size"], metrics["test_size"]) == (45, 15)  # 75/25 of 60
        assert metrics["epochs"] == 10  # tol null: every one of max_iter epochs
        assert metrics["accuracy"] >= 0.8  # a bright corner per class: easy even from pixels
        assert plots == {"confusion_matrix.png"}
        _, mlrun = mlflow_run(exercise_id, metrics["mlflow_run_id"])
        assert mlrun.data.params["settings.penalty"] == exercise_id.split("_")[1]
        assert mlrun.data.params["settings.split.random_state"] == "5"
        assert mlrun.data.tags["dataset"] == "animals"
        run_ids.add(metrics["mlflow_run_id"])
    assert len(run_ids) == 3


# --- ch 10 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "learned"), [("or", 1), ("and", 1), ("xor", 0)])
def test_perceptron_learns_or_and_but_not_xor(in_tmp, mlflow_store, table, learned) -> None:
    run("p", "perceptron", {"table": table, "alpha": 0.1, "epochs": 20})
    metrics, _, plots = record("p")
    assert metrics["learned"] == learned
    assert (metrics["correct"] == 4) == bool(learned)
    truth = {"or": [0, 1, 1, 1], "and": [0, 0, 0, 1], "xor": [0, 1, 1, 0]}[table]
    predictions = [metrics["predictions"][k] for k in ("0_0", "0_1", "1_0", "1_1")]
    assert sum(p == t for p, t in zip(predictions, truth, strict=True)) == metrics["correct"]
    assert plots == {"decision_boundary.png", "mistakes.png", "history.csv"}


def test_nn_xor_needs_its_hidden_layer(in_tmp, mlflow_store) -> None:
    settings = {
        "table": "xor",
        "layers": [2, 2, 1],
        "alpha": 0.5,
        "epochs": 2000,
        "baseline_layers": [2, 1],
    }
    run("nn_xor", "neural_network", settings)  # seed 1 learns XOR within 2,000 epochs
    metrics, report, plots = record("nn_xor")
    assert (metrics["correct"], metrics["learned"]) == (4, 1)
    assert metrics["final_loss"] < 0.05 < metrics["initial_loss"]
    assert metrics["baseline_correct"] < 4 and metrics["baseline_learned"] == 0
    assert metrics["baseline_final_loss"] > 0.4  # no line separates XOR: stuck near 0.5
    assert "NeuralNetwork: 2-1" in report and report.count("4/4 correct: learned") == 1
    assert plots == {"loss.png", "history.csv"}
    client, mlrun = mlflow_run("nn_xor", metrics["mlflow_run_id"])
    steps = [m.step for m in client.get_metric_history(mlrun.info.run_id, "baseline_loss")]
    assert len(steps) <= stage.MAX_LOGGED_STEPS + 1 and steps[-1] == 2000  # every 2nd epoch


def test_nn_digits_learns_from_the_shared_split(digits, mlflow_store) -> None:
    settings = {"layers": [64, 16, 10], "alpha": 0.1, "epochs": 30}
    run("nn_digits", "neural_network", settings, "digits")
    metrics, report, plots = record("nn_digits")
    assert metrics["accuracy"] > 0.7  # chance is 0.1
    assert metrics["final_loss"] < metrics["initial_loss"]
    assert "100 test" in report  # 25% of the 400 images, from data/splits/digits.json
    assert plots == {"loss.png", "confusion_matrix.png", "history.csv"}
    with pytest.raises(ConfigError, match=r"nn_digits.settings.layers: the data needs 64 inputs"):
        run("nn_digits", "neural_network", {**settings, "layers": [32, 10]}, "digits")


# --- ch 11, 19 ----------------------------------------------------------------------------------


def test_convolutions_match_opencv_on_a_real_photo(in_tmp, mlflow_store) -> None:
    kernels = ["small_blur", "large_blur", "sharpen", "laplacian", "sobel_x", "sobel_y", "emboss"]
    run("convolutions", "convolutions", {"kernels": kernels, "image": "china.jpg"})
    metrics, report, plots = record("convolutions")
    assert metrics["max_abs_diff"] == dict.fromkeys(kernels, 0)
    assert metrics["max_abs_diff_overall"] == 0
    assert (metrics["image_height"], metrics["image_width"]) == (427, 640)
    assert plots == {f"{k}.png" for k in kernels} | {"convolutions.png"}
    sharpened = cv2.imread(str(report_dir("convolutions") / "plots" / "sharpen.png"), 0)
    assert sharpened.shape == (427, 640) and sharpened.std() > 10
    # A rerun with fewer kernels leaves no figure of the earlier run behind.
    run("convolutions", "convolutions", {"kernels": ["emboss"]})
    assert record("convolutions")[2] == {"emboss.png", "convolutions.png"}


def test_visualize_lenet_says_which_renderer_drew_it(in_tmp, mlflow_store) -> None:
    settings = {"model": "lenet", "width": 28, "height": 28, "depth": 1, "classes": 10}
    run("visualize_lenet", "visualize", settings)
    metrics, report, plots = record("visualize_lenet")
    # 5x5x1x20+20, 5x5x20x50+50, 2450x500+500, 500x10+10
    assert metrics["parameters"] == 520 + 25_050 + 1_225_500 + 5_010
    assert plots == {"lenet.png"}
    assert cv2.imread(str(report_dir("visualize_lenet") / "plots" / "lenet.png")) is not None
    _, mlrun = mlflow_run("visualize_lenet", metrics["mlflow_run_id"])
    assert mlrun.data.tags["renderer"] in ("graphviz", "matplotlib")
    assert f"renderer: {mlrun.data.tags['renderer']}" in report


def test_logged_steps_thin_long_histories() -> None:
    assert stage.logged_steps(5) == [1, 2, 3, 4, 5]
    steps = stage.logged_steps(20_000)
    assert len(steps) <= stage.MAX_LOGGED_STEPS + 1
    assert steps[0] == 1 and steps[-1] == 20_000 and steps == sorted(set(steps))

"""The real pipeline, end to end: `dvc exp run -S profile=quick` in a temporary git repository.

The project is copied as committed, with a params.yaml derived from the real one: every stage
template of dvc.yaml and every training code path runs once (not every foreach item). The
mirror points at tiny separable datasets built here (with a corrupt image planted in Animals),
MLflow uses its default sqlite store in the repository root, and the stages run in the warm
start's forked workers, as they do for a user.
"""

from __future__ import annotations

import copy
import hashlib
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import encode, separable
from tests.dvc_repo import make_repo, real_params, run, stop_warm, warm_env, warm_log

pytestmark = pytest.mark.integration

KEPT_DATASETS = ("animals", "mnist", "cifar10", "smiles", "digits")
KEPT_EXPERIMENTS = (
    "knn_animals",
    "shallownet_animals",
    "lenet_mnist",
    "captcha_breaker",
    "smile_detection",
)
# ch 15-18 in one MiniVGGNet training: step decay (ch 16), the TrainingMonitor (ch 17), one
# weights file per improvement and the evaluation of the best checkpoint (ch 18).
MINIVGG = "minivggnet_steps_monitor_best"
# id -> (classes, the test accuracy it must beat: chance is 1 / classes)
EXPERIMENTS = {
    "knn_animals": (3, 0.9),
    "shallownet_animals": (3, 0.9),
    "lenet_mnist": (10, 0.8),
    MINIVGG: (10, 0.5),
    "captcha_breaker": (9, 0.9),
    "smile_detection": (2, 0.9),
}
KERAS = [exp_id for exp_id in EXPERIMENTS if exp_id != "knn_animals"]
CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def toy_params() -> dict:
    """The real params.yaml with fewer datasets and experiments; the other sections as they are."""
    real = real_params()
    params = {k: v for k, v in real.items() if k not in ("datasets", "experiments")}
    params["datasets"] = {name: real["datasets"][name] for name in KEPT_DATASETS}
    experiments = {exp_id: real["experiments"][exp_id] for exp_id in KEPT_EXPERIMENTS}
    # 300 training digits in batches of 128: the book's rate of 0.01 is still at chance after
    # 10 epochs; 0.05 reads them all from the 5th on.
    experiments["lenet_mnist"]["quick"] = {
        "optimizer": {"learning_rate": 0.05},
        "train": {"epochs": 8},
    }
    minivgg = copy.deepcopy(real["experiments"]["lr_step_decay_f025"])
    minivgg["train"].update(training_monitor=True, checkpoint="improvements")
    minivgg["evaluate"] = {"checkpoint": "best"}
    minivgg["quick"] = {"optimizer": {"step_every": 2}, "train": {"epochs": 4}}
    experiments[MINIVGG] = minivgg
    params["experiments"] = experiments
    assert params["profile"] == "book"  # `dvc exp run -S profile=quick` switches it
    return params


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_mirror(root: Path) -> Path:
    for name in ("animals", "mnist", "cifar10", "smiles"):
        (root / name).mkdir(parents=True)
    animals = root / "animals" / "animals.zip"
    with zipfile.ZipFile(animals, "w") as archive:
        for label, name in enumerate(["cats", "dogs", "panda"]):
            for i in range(40):
                archive.writestr(
                    f"animals/{name}/{name}_{i:03d}.jpg",
                    encode(separable(label, 64, seed=100 * label + i)),
                )
        archive.writestr("animals/cats/broken.jpg", b"\xff\xd8\xff\xe0 this is not a JPEG")
    cifar = root / "cifar10" / "cifar10-jpg.zip"
    with zipfile.ZipFile(cifar, "w") as archive:
        for split, count in (("train", 30), ("test", 10)):
            for label, name in enumerate(CIFAR):
                for i in range(count):
                    seed = 10_000 * (split == "test") + 100 * label + i
                    archive.writestr(
                        f"{split}/{name}/{i:04d}.jpg", encode(separable(label, 32, seed))
                    )
    mnist = root / "mnist" / "mnist.npz"
    labels = np.arange(400) % 10
    images = np.stack([separable(int(c), 28, seed=i, channels=1) for i, c in enumerate(labels)])
    np.savez(
        mnist,
        x_train=images[:300],
        y_train=labels[:300].astype(np.uint8),
        x_test=images[300:],
        y_test=labels[300:].astype(np.uint8),
    )
    smiles = root / "smiles" / "SMILEsmileD-master.zip"
    folders = {"negatives/negatives7": 0, "positives/positives7": 1}
    with zipfile.ZipFile(smiles, "w") as archive:
        for folder, label in folders.items():
            for i in range(60):
                archive.writestr(
                    f"SMILEsmileD-master/SMILEs/{folder}/{i:04d}.jpg",
                    encode(separable(label, 64, seed=500 * label + i, channels=1)),
                )
    manifest = {
        "smiles": {
            "file": "smiles/SMILEsmileD-master.zip",
            "sha256": _sha256(smiles),
            "format": "smiles-github-zip",
            "root": "SMILEsmileD-master/SMILEs",
            "classes": {"positives/positives7": "smiling", "negatives/negatives7": "not_smiling"},
        },
        "animals": {
            "file": "animals/animals.zip",
            "sha256": _sha256(animals),
            "format": "image-folder-zip",
            "root": "animals",
        },
        "mnist": {"file": "mnist/mnist.npz", "sha256": _sha256(mnist), "format": "keras-npz"},
        "cifar10": {
            "file": "cifar10/cifar10-jpg.zip",
            "sha256": _sha256(cifar),
            "format": "image-folder-zip",
            "splits": {"train": "train", "test": "test"},
        },
    }
    (root / "mirror.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("pipeline")
    runtime = base / "run"
    runtime.mkdir()
    env = warm_env(runtime, mirror=build_mirror(base / "mirror"))
    root = make_repo(base / "repo", toy_params())
    try:
        result = run(["dvc", "exp", "run", "-S", "profile=quick"], root, env)
        (base / "repro.log").write_text(result.stdout + result.stderr)
        yield root, env, runtime
    finally:
        stop_warm(runtime, env)


def read(root: Path, *parts: str) -> dict:
    return json.loads(root.joinpath(*parts).read_text())


def metrics_of(root: Path, exp_id: str) -> dict:
    return read(root, "reports", "experiments", exp_id, "metrics.json")


def quick_params(root: Path) -> dict:
    """params.yaml as the run left it, with the quick overrides merged in (as config does)."""
    from dl4cv.config import load_params

    params = load_params(root / "params.yaml")
    assert params.profile == "quick"
    return params


def test_every_experiment_learns(repo):
    """Separable data: each model beats chance by far, on the test split."""
    root, _, _ = repo
    for exp_id, (classes, floor) in EXPERIMENTS.items():
        metrics = metrics_of(root, exp_id)
        assert metrics["profile"] == "quick"
        assert len(metrics["per_class"]) == classes, exp_id
        assert metrics["support"] == sum(c["support"] for c in metrics["per_class"].values())
        assert metrics["accuracy"] > floor, (exp_id, metrics["accuracy"])


def test_training_history_matches_quick_epochs(repo):
    root, _, _ = repo
    params = quick_params(root)
    for exp_id in KERAS:
        epochs = params.experiment(exp_id).train.epochs
        history = read(root, "models", exp_id, "model", "history.json")
        assert len(history["loss"]) == len(history["val_accuracy"]) == epochs
        assert history["loss"][-1] < history["loss"][0], exp_id  # it trained
        assert (root / "models" / exp_id / "model" / "model.keras").stat().st_size > 0
        rows = (root / "reports" / "experiments" / exp_id / "history.csv").read_text().splitlines()
        assert len(rows) == epochs + 1
        assert metrics_of(root, exp_id)["epochs"] == epochs


def test_step_decay_drops_the_learning_rate_between_epochs(repo):
    root, _, _ = repo
    spec = quick_params(root).experiment(MINIVGG).optimizer
    history = read(root, "models", MINIVGG, "model", "history.json")
    expected = [
        spec.learning_rate * spec.step_factor ** ((1 + e) // spec.step_every)
        for e in range(len(history["lr"]))
    ]
    assert history["lr"] == pytest.approx(expected, rel=1e-6)
    assert len(set(history["lr"])) > 1


def test_plots_are_real_images(repo):
    root, _, _ = repo
    for exp_id in EXPERIMENTS:
        for name in ("confusion_matrix.png", "curves.png", "learning_rate.png"):
            image = cv2.imread(str(root / "reports" / "experiments" / exp_id / name))
            assert image is not None and image.shape[0] > 100 and image.shape[1] > 100


def test_corrupt_image_is_set_aside_and_reported(repo):
    root, _, _ = repo
    rejects = (root / "data" / "processed" / "animals-rejects.csv").read_text().splitlines()
    assert rejects[0] == "file,reason"
    assert len(rejects) == 2 and rejects[1].startswith("animals/cats/broken.jpg,")
    with np.load(root / "data" / "processed" / "animals.npz") as npz:
        assert len(npz["labels"]) == 120  # 121 files, one set aside, none lost


def test_mlflow_has_one_run_per_experiment(repo):
    root, _, _ = repo
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dl4cv")
    runs = client.search_runs([experiment.experiment_id])
    params = quick_params(root)
    names = [run.info.run_name for run in runs]
    by_name = {run.info.run_name: run for run in runs}
    # Every training has its run; so have the exercises, predictions and the other records.
    expected = {
        *EXPERIMENTS,
        *params.exercises,
        *params.predictions,
        "captcha_solve",
        "smile_detect",
        "book-report",
    }
    assert expected <= set(names)
    assert sorted(names) == sorted(set(names)), "one run each"
    for exp_id in EXPERIMENTS:
        run_ = by_name[exp_id]
        metrics = metrics_of(root, exp_id)
        assert metrics["mlflow_run_id"] == run_.info.run_id
        assert run_.data.params["dataset"] == params.experiment(exp_id).dataset
        assert run_.data.tags["dl4cv.profile"] == "quick"
        origin = "generator" if exp_id == "captcha_breaker" else "mirror"
        assert run_.data.tags["dataset.origin"] == origin, exp_id
        assert run_.data.metrics["test_accuracy"] == pytest.approx(metrics["accuracy"])
        artifacts = {a.path for a in client.list_artifacts(run_.info.run_id)}
        assert {"report", "data"} <= artifacts
        (model,) = client.search_logged_models(
            [run_.info.experiment_id], filter_string=f"source_run_id = '{run_.info.run_id}'"
        )
        assert model.name == "model", exp_id  # the MLflow Model: runs:/<run id>/model
        assert run_.inputs.dataset_inputs[0].dataset.name == run_.data.params["dataset"]
    animals = by_name["shallownet_animals"]
    assert animals.data.metrics["rejected_images"] == 1
    history = client.get_metric_history(animals.info.run_id, "val_accuracy")
    assert [m.step for m in history] == list(range(1, len(history) + 1))


def test_monitor_checkpoints_and_the_best_checkpoint(repo):
    """ch 17: the monitor's files; ch 18: one weights file per val_loss improvement, and the
    evaluation of the best checkpoint rather than of the last epoch."""
    root, _, _ = repo
    monitor = root / "models" / MINIVGG / "monitor"
    watched = json.loads((monitor / "history.json").read_text())
    history = read(root, "models", MINIVGG, "model", "history.json")
    assert watched["val_loss"] == pytest.approx(history["val_loss"])
    assert cv2.imread(str(monitor / "curves.png")) is not None
    saved = sorted((root / "models" / MINIVGG / "model" / "improvements").iterdir())
    metrics = metrics_of(root, MINIVGG)
    losses = history["val_loss"]
    improved = [e for e, loss in enumerate(losses) if loss < min(losses[:e], default=np.inf)]
    assert len(saved) == metrics["improvement_checkpoints"] == len(improved)
    assert [p.name[: len("weights-001-")] for p in saved] == [
        f"weights-{e + 1:03d}-" for e in improved
    ]
    assert metrics["checkpoint"] == "best"
    # Validation is the test split here: the best checkpoint scores what its epoch scored.
    assert metrics["accuracy"] == pytest.approx(metrics["best_val_loss_accuracy"], abs=1e-6)
    assert (root / "models" / MINIVGG / "model" / "best.keras").stat().st_size > 0


def test_exercises_predictions_and_the_book_report(repo):
    root, _, _ = repo
    params = quick_params(root)
    records = root / "reports" / "experiments"
    for exercise in params.exercises:
        metrics = json.loads((records / exercise / "metrics.json").read_text())
        assert metrics["experiment"] == exercise and metrics["profile"] == "quick"
    assert metrics_of(root, "perceptron_xor")["learned"] == 0
    assert metrics_of(root, "perceptron_and")["learned"] == 1
    assert metrics_of(root, "nn_xor")["learned"] == 1
    # The exercises that learn from data beat chance by far too (chance: 1/2, 1/3, 1/10).
    for exercise, floor in (
        ("gd_blobs", 0.9),
        ("sgd_blobs", 0.9),
        ("regularization_none", 0.9),
        ("regularization_l1", 0.9),
        ("regularization_l2", 0.9),
        ("nn_digits", 0.8),
    ):
        assert metrics_of(root, exercise)["accuracy"] > floor, exercise
    load = metrics_of(root, "shallownet_load")
    assert load["samples"] == 10 and load["originals_shown"] == 10
    assert load["sample_accuracy"] >= 0.8  # the reloaded model is the one that learned
    assert cv2.imread(str(records / "shallownet_load" / "predictions.png")) is not None
    book = (root / "reports" / "book.md").read_text()
    for exp_id in [*EXPERIMENTS, *params.exercises, *params.predictions]:
        assert f"| {exp_id} " in book, exp_id
    verdicts = {r["id"]: r["verdict"] for r in read(root, "reports", "book.json")["experiments"]}
    for exp_id in [*EXPERIMENTS, *params.exercises]:
        assert verdicts[exp_id] == "not comparable (quick profile)", exp_id  # never reproduced
    # The book's experiments this run left out are reported missing, not silently dropped.
    assert verdicts["minivggnet_cifar10"] == "missing"
    assert (root / "reports" / "book.html").read_text().count("data:image/png;base64,") >= 6


def test_captcha_solve_detect_and_imagenet_records(repo):
    root, _, _ = repo
    params = quick_params(root)
    solve = metrics_of(root, "captcha_solve")
    assert solve["captchas"] == params.captcha.solve.count
    assert solve["digit_accuracy"] > 0.9  # the captcha_breaker model, reloaded
    grid = root / "reports" / "experiments" / "captcha_solve" / "solve_grid.png"
    assert cv2.imread(str(grid)) is not None
    detect = metrics_of(root, "smile_detect")
    assert detect["model_experiment"] == "smile_detection"
    assert detect["frames"] == detect["frames_declared"] > 0
    test_faces = len(read(root, "data", "splits", "smiles.json")["test"])
    truth_faces = min(params.detect.demo.faces, test_faces)  # as many as the test split has
    assert detect["truth"]["truth_faces"] == truth_faces
    assert detect["frames"] == -(-truth_faces // params.detect.demo.per_frame)
    imagenet = metrics_of(root, "imagenet_pretrained")
    assert imagenet["skipped"] is True


def test_stages_ran_in_the_warm_server(repo):
    """The first stage started the server; the trainings ran in its forked workers."""
    _, _, runtime = repo
    log = warm_log(runtime)
    assert "preloaded" in log
    for exp_id in KERAS:
        assert f"stages/train.py {exp_id}: exit 0" in log, exp_id
        assert f"stages/evaluate.py {exp_id}: exit 0" in log, exp_id


def test_a_full_run_warns_only_of_problems(repo):
    """No declared output is left empty (DVC's "'<path>' is empty" for an experiment without a
    TrainingMonitor, a k-NN without a resume state, the ImageNet stage while it is off)."""
    root, _, _ = repo
    log = (root.parent / "repro.log").read_text()
    assert "is empty" not in log, [line for line in log.splitlines() if "is empty" in line]


def test_second_repro_is_a_noop(repo):
    root, env, _ = repo
    result = run(["dvc", "repro"], root, env)
    assert "Data and pipelines are up to date" in result.stdout
    status = run(["dvc", "metrics", "show", "--json"], root, env)
    shown = json.loads(status.stdout)
    assert any("reports/metrics/lenet_mnist.json" in json.dumps(v) for v in shown.values())

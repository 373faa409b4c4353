"""The real pipeline, end to end: `dvc exp run -S profile=quick` in a temporary git repository.

The repository is copied as committed, the mirror points at tiny datasets built here (with a
corrupt image planted in Animals), MLflow uses its default sqlite store in the repository root.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from tests.conftest import REPO, encode

pytestmark = pytest.mark.integration

EXPERIMENTS = {
    "knn_animals": 3,
    "shallownet_animals": 3,
    "shallownet_cifar10": 10,
    "lenet_mnist": 10,
    "minivggnet_cifar10": 10,
    "minivggnet_cifar10_nobn": 10,
    "mlp_mnist": 10,
    "mlp_cifar10": 10,
    "lr_step_decay_f025": 10,
    "lr_step_decay_f05": 10,
    "training_monitor": 10,
    "checkpoint_improvements": 10,
    "checkpoint_best": 10,
    "captcha_breaker": 9,
    "smile_detection": 2,
}
PROJECT_FILES = [
    "book",
    "src",
    "stages",
    "params.yaml",
    "dvc.yaml",
    ".dvc/config",
    ".dvc/.gitignore",
    ".gitignore",
    "pyproject.toml",
]
CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TIMEOUT = 1200


def separable(label: int, size: int, seed: int, channels: int = 3) -> np.ndarray:
    """Noise plus a bright block at a class-specific place of a 4x3 grid: easy to learn."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 50, (size, size, channels), dtype=np.uint8)
    cell = size // 4
    row, col = divmod(label, 4)
    image[row * cell : (row + 1) * cell, col * cell : (col + 1) * cell] = 230
    return image if channels == 3 else image[:, :, 0]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_mirror(root: Path) -> Path:
    (root / "animals").mkdir(parents=True)
    (root / "mnist").mkdir()
    (root / "cifar10").mkdir()
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
    smiles.parent.mkdir()
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


def _env(mirror: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DL4CV_"))}
    env["DL4CV_MIRROR"] = str(mirror)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, (
        f"{args} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    base = tmp_path_factory.mktemp("pipeline")
    repo = base / "repo"
    for name in PROJECT_FILES:
        src, dst = REPO / name, repo / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, dst)
    env = _env(build_mirror(base / "mirror"))
    for args in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
    ):
        _run(args, repo, env)
    result = _run(["dvc", "exp", "run", "-S", "profile=quick"], repo, env)
    (base / "repro.log").write_text(result.stdout + result.stderr)
    return repo, env


def test_every_experiment_reports_sane_metrics(repo):
    root, _ = repo
    for exp_id, n_classes in EXPERIMENTS.items():
        metrics = json.loads(
            (root / "reports" / "experiments" / exp_id / "metrics.json").read_text()
        )
        assert metrics["profile"] == "quick"
        assert 0.0 <= metrics["accuracy"] <= 1.0
        assert len(metrics["per_class"]) == n_classes
        assert metrics["support"] == sum(c["support"] for c in metrics["per_class"].values())
    # Separable data: the models that see enough epochs must beat chance clearly.
    for exp_id in ("knn_animals", "lenet_mnist", "shallownet_animals"):
        metrics = json.loads(
            (root / "reports" / "experiments" / exp_id / "metrics.json").read_text()
        )
        assert metrics["accuracy"] > 2 / EXPERIMENTS[exp_id], (exp_id, metrics["accuracy"])


def test_training_history_matches_quick_epochs(repo):
    root, _ = repo
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["profile"] == "quick"
    for exp_id in EXPERIMENTS:
        if exp_id == "knn_animals":
            continue
        epochs = params["experiments"][exp_id]["quick"]["train"]["epochs"]
        history = json.loads((root / "models" / exp_id / "model" / "history.json").read_text())
        assert len(history["loss"]) == len(history["val_accuracy"]) == epochs
        assert (root / "models" / exp_id / "model" / "model.keras").stat().st_size > 0
        rows = (root / "reports" / "experiments" / exp_id / "history.csv").read_text().splitlines()
        assert len(rows) == epochs + 1


def test_step_decay_drops_the_learning_rate_between_epochs(repo):
    root, _ = repo
    params = yaml.safe_load((root / "params.yaml").read_text())
    for exp_id in ("lr_step_decay_f025", "lr_step_decay_f05"):
        spec = params["experiments"][exp_id]
        lr0, factor = spec["optimizer"]["learning_rate"], spec["optimizer"]["step_factor"]
        every = spec["quick"]["optimizer"]["step_every"]
        history = json.loads((root / "models" / exp_id / "model" / "history.json").read_text())
        expected = [lr0 * factor ** ((1 + e) // every) for e in range(len(history["lr"]))]
        assert history["lr"] == pytest.approx(expected, rel=1e-6), exp_id
        assert len(set(history["lr"])) > 1


def test_plots_are_real_images(repo):
    root, _ = repo
    for exp_id in EXPERIMENTS:
        for name in ("confusion_matrix.png", "curves.png", "learning_rate.png"):
            image = cv2.imread(str(root / "reports" / "experiments" / exp_id / name))
            assert image is not None and image.shape[0] > 100 and image.shape[1] > 100


def test_corrupt_image_is_set_aside_and_reported(repo):
    root, _ = repo
    rejects = (root / "data" / "processed" / "animals-rejects.csv").read_text().splitlines()
    assert rejects[0] == "file,reason"
    assert len(rejects) == 2 and rejects[1].startswith("animals/cats/broken.jpg,")
    with np.load(root / "data" / "processed" / "animals.npz") as npz:
        assert len(npz["labels"]) == 120  # 121 files, one set aside, none lost


def test_mlflow_has_one_run_per_experiment(repo):
    root, _ = repo
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dl4cv")
    runs = client.search_runs([experiment.experiment_id])
    params = yaml.safe_load((root / "params.yaml").read_text())
    by_name = {run.info.run_name: run for run in runs}
    # Every training has its run; so have the exercises, predictions and the book report.
    assert set(EXPERIMENTS) | set(params["exercises"]) | set(params["predictions"]) <= set(by_name)
    assert "book-report" in by_name
    for exp_id in EXPERIMENTS:
        run = by_name[exp_id]
        assert run.data.params["dataset"] == params["experiments"][exp_id]["dataset"]
        assert run.data.tags["dl4cv.profile"] == "quick"
        origin = "generator" if exp_id == "captcha_breaker" else "mirror"
        assert run.data.tags["dataset.origin"] == origin, exp_id
        assert "test_accuracy" in run.data.metrics
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"model", "report", "data"} <= artifacts
    animals = by_name["shallownet_animals"]
    assert animals.data.metrics["rejected_images"] == 1
    history = client.get_metric_history(animals.info.run_id, "val_accuracy")
    assert [m.step for m in history] == list(range(1, len(history) + 1))


def test_monitor_and_checkpoint_files(repo):
    """ch 17: the monitor's files; ch 18: one weights file per val_loss improvement."""
    root, _ = repo
    monitor = root / "reports" / "experiments" / "training_monitor" / "monitor"
    watched = json.loads((monitor / "history.json").read_text())
    history = json.loads(
        (root / "models" / "training_monitor" / "model" / "history.json").read_text()
    )
    assert watched["val_loss"] == pytest.approx(history["val_loss"])
    assert cv2.imread(str(monitor / "curves.png")) is not None
    saved = sorted(
        (root / "models" / "checkpoint_improvements" / "model" / "improvements").iterdir()
    )
    metrics = json.loads(
        (root / "reports" / "experiments" / "checkpoint_improvements" / "metrics.json").read_text()
    )
    assert len(saved) == metrics["improvement_checkpoints"] >= 1
    assert saved[0].name.startswith("weights-001-")
    best = json.loads(
        (root / "reports" / "experiments" / "checkpoint_best" / "metrics.json").read_text()
    )
    assert best["checkpoint"] == "best"


def test_exercises_predictions_and_the_book_report(repo):
    root, _ = repo
    params = yaml.safe_load((root / "params.yaml").read_text())
    records = root / "reports" / "experiments"
    for exercise in params["exercises"]:
        metrics = json.loads((records / exercise / "metrics.json").read_text())
        assert metrics["experiment"] == exercise and metrics["profile"] == "quick"
    xor = json.loads((records / "perceptron_xor" / "metrics.json").read_text())
    assert xor["learned"] == 0
    load = json.loads((records / "shallownet_load" / "metrics.json").read_text())
    assert load["samples"] == 10 and load["originals_shown"] == 10
    assert cv2.imread(str(records / "shallownet_load" / "predictions.png")) is not None
    book = (root / "reports" / "book.md").read_text()
    for exp_id in [*EXPERIMENTS, *params["exercises"], *params["predictions"]]:
        assert f"| {exp_id} " in book, exp_id
    verdicts = {
        r["id"]: r["verdict"]
        for r in json.loads((root / "reports" / "book.json").read_text())["experiments"]
    }
    for exp_id in [*EXPERIMENTS, *params["exercises"]]:
        assert verdicts[exp_id] == "not comparable (quick profile)", exp_id  # never reproduced
    assert (root / "reports" / "book.html").read_text().count("data:image/png;base64,") >= 10


def test_second_repro_is_a_noop(repo):
    root, env = repo
    result = _run(["dvc", "repro"], root, env)
    assert "Data and pipelines are up to date" in result.stdout
    status = _run(["dvc", "metrics", "show", "--json"], root, env)
    shown = json.loads(status.stdout)
    assert any(
        "reports/experiments/lenet_mnist/metrics.json" in json.dumps(v) for v in shown.values()
    )


def test_killed_training_resumes_with_the_same_epoch_count(repo):
    root, env = repo
    epochs = 60
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["experiments"]["shallownet_animals"]["quick"]["train"]["epochs"] = epochs
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    state_file = root / "models" / "shallownet_animals" / "last" / "state.json"
    proc = subprocess.Popen(
        ["dvc", "repro", "train@shallownet_animals"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    killed_at = None
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if state_file.exists():
                state = json.loads(state_file.read_text())
                if state["epochs"] == epochs and state["completed"] >= 2:
                    os.killpg(proc.pid, signal.SIGKILL)
                    killed_at = state["completed"]
                    break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert killed_at is not None and killed_at < epochs, "training was not interrupted"

    _run(["dvc", "repro", "train@shallownet_animals"], root, env)
    history = json.loads(
        (root / "models" / "shallownet_animals" / "model" / "history.json").read_text()
    )
    assert len(history["loss"]) == epochs
    run_info = json.loads(
        (root / "models" / "shallownet_animals" / "model" / "run.json").read_text()
    )
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    run = client.get_run(run_info["run_id"])
    assert int(run.data.tags["resumed_from_epoch"]) >= killed_at
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert sorted(set(steps)) == list(range(1, epochs + 1))

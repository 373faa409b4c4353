"""Shared fixtures: real images encoded by OpenCV, real archives, an isolated MLflow store."""

from __future__ import annotations

import fcntl
import os
import shutil
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Stages run cold in tests (no background server outliving them); test_warmstart turns it on.
os.environ.setdefault("DL4CV_WARM", "0")

REPO = Path(__file__).resolve().parents[1]


def encode(image: np.ndarray, ext: str = ".jpg") -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def blob_image(label: int, size: int = 48, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A noisy image whose class is easy to see: a bright square in a class-specific corner."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (size, size, channels), dtype=np.uint8)
    half = size // 2
    y, x = divmod(label % 4, 2)
    image[y * half : (y + 1) * half, x * half : (x + 1) * half] += 180
    return image if channels == 3 else image[:, :, 0]


def separable(label: int, size: int, seed: int, channels: int = 3) -> np.ndarray:
    """Noise plus a bright block at a class-specific place of a 4x3 grid: easy to learn."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 50, (size, size, channels), dtype=np.uint8)
    cell = size // 4
    row, col = divmod(label, 4)
    image[row * cell : (row + 1) * cell, col * cell : (col + 1) * cell] = 230
    return image if channels == 3 else image[:, :, 0]


def make_image_zip(
    path: Path,
    root: str,
    per_class: int,
    classes: list[str],
    extra: dict[str, bytes] | None = None,
    size: int = 48,
) -> Path:
    """A zip of `root/<class>/<i>.jpg`, plus any `extra` members (corrupt files...)."""
    with zipfile.ZipFile(path, "w") as archive:
        for label, name in enumerate(classes):
            for i in range(per_class):
                archive.writestr(
                    f"{root}/{name}/{i:04d}.jpg",
                    encode(blob_image(label, size, seed=label * 1000 + i)),
                )
        for member, data in (extra or {}).items():
            archive.writestr(member, data)
    return path


def toy_params(experiments: dict, dataset: str = "toy") -> dict:
    """Raw params with one tiny bundled dataset (8x8 digits) and the given experiments."""
    return {
        "profile": "book",
        "seed": 1,
        "preprocess": {},
        "datasets": {
            dataset: {
                "source": {"format": "sklearn-digits"},
                "image": {"width": 8, "height": 8, "channels": 1},
                "split": {"method": "random"},
            }
        },
        "experiments": experiments,
    }


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test from an empty folder, as a stage runs from the repository root."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def migrated_store(factory: pytest.TempPathFactory) -> Path:
    """An empty sqlite store with MLflow's schema, made once per session and shared by the
    pytest-xdist workers (their temporary folders have a common parent): copying it takes
    milliseconds, migrating a new database takes seconds."""
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    path = base / "mlflow-template.db"
    with open(base / "mlflow-template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker migrates, the other waits
        if not path.exists():
            from mlflow import MlflowClient

            tmp = base / "mlflow-template.tmp.db"
            tmp.unlink(missing_ok=True)
            MlflowClient(f"sqlite:///{tmp}").search_experiments()
            tmp.replace(path)
    return path


@pytest.fixture
def mlflow_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A fresh sqlite MLflow store for one test, named by MLFLOW_TRACKING_URI."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(migrated_store(tmp_path_factory), db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def pytest_configure(config: pytest.Config) -> None:
    """pytest-xdist (3.6+) hands out the files of `--dist loadfile` by their number of tests,
    most first, unless told to keep the collection order: keep it, for the sort below."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end pipeline tests (minutes of `dvc repro`) go first: under `make test`
    (pytest-xdist, a worker per core) they then run beside the rest of the suite, not after it."""
    items.sort(key=lambda item: item.get_closest_marker("integration") is None)

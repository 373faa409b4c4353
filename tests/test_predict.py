"""The ch 13 predict stage: a saved model reloaded on its own labels seeded sample images."""

from __future__ import annotations

import copy
import csv
import shutil
import zipfile
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from dl4cv.config import ConfigError, parse_params
from dl4cv.data.formats import ProcessedDataset
from dl4cv.pipeline import predict, train
from dl4cv.runtime import paths
from dl4cv.runtime.fileio import read_json
from dl4cv.training.inputs import scale_pixels
from tests.conftest import blob_image, encode, migrated_store
from tests.test_train_stage import DATASET, RAW_PARAMS, SHALLOW, write_project

LOAD = "shallownet_load_toy"


def params_with(prediction: dict):
    raw = copy.deepcopy(RAW_PARAMS)
    raw["predictions"] = {LOAD: {"dataset": DATASET, **prediction}}
    return parse_params(raw, source="test params")


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """The toy project with ShallowNet trained, once for the module (each test gets a copy)."""
    root = tmp_path_factory.mktemp("trained")
    shutil.copyfile(migrated_store(tmp_path_factory), root / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        write_project(root)
        params = params_with({"chapter": 13, "experiment": SHALLOW, "samples": 7, "seed": 3})
        train.run(SHALLOW, params)
    return root, params


@pytest.fixture
def trained(trained_once, in_tmp: Path, monkeypatch: pytest.MonkeyPatch):
    """A copy of the trained project, its MLflow store included, as the working folder."""
    root, params = trained_once
    shutil.copytree(root, in_tmp, dirs_exist_ok=True)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{in_tmp / 'mlflow.db'}")
    return params


def rows(pred_id: str) -> list[dict]:
    with open(paths.report_dir(pred_id) / "predictions.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_predictions_come_from_the_saved_model(trained):
    metrics = predict.run(LOAD, trained)
    got = rows(LOAD)
    assert len(got) == metrics["samples"] == 7
    processed = ProcessedDataset.load(paths.processed_file(DATASET))
    index = {name: i for i, name in enumerate(processed.ids)}
    picked = [index[r["id"]] for r in got]
    assert len(set(picked)) == 7  # drawn without replacement
    split = read_json(paths.split_file(DATASET))
    assert set(picked) <= set(split["test"])
    model = keras.models.load_model(paths.model_dir(SHALLOW) / train.FINAL_KERAS)
    probs = model.predict(scale_pixels(processed.images[picked]), verbose=0)
    assert [r["predicted"] for r in got] == [processed.classes[i] for i in probs.argmax(1)]
    assert [float(r["probability"]) for r in got] == pytest.approx(probs.max(1), abs=1e-4)
    assert [r["true"] for r in got] == [processed.classes[processed.labels[i]] for i in picked]
    assert metrics["correct"] == sum(r["true"] == r["predicted"] for r in got)
    assert read_json(paths.report_dir(LOAD) / "metrics.json") == metrics
    # Two rows of five tiles (the raw file here is no zip: the 16 px images, enlarged).
    grid = cv2.imread(str(paths.report_dir(LOAD) / "predictions.png"))
    assert grid.shape == (2 * (predict.TILE + 40), predict.COLUMNS * predict.TILE, 3)
    assert metrics["originals_shown"] == 0

    again = predict.run(LOAD, trained)
    assert rows(LOAD) == got  # the seed fixes the sample
    assert again["mlflow_run_id"] != metrics["mlflow_run_id"]


def test_original_images_are_shown_from_the_raw_archive(trained):
    processed = ProcessedDataset.load(paths.processed_file(DATASET))
    raw = paths.raw_dir(DATASET) / "toy.zip"
    with zipfile.ZipFile(raw, "w") as archive:
        for i, name in enumerate(processed.ids):
            archive.writestr(name, encode(blob_image(int(processed.labels[i]), size=300, seed=i)))
    metrics = predict.run(LOAD, trained)
    assert metrics["originals_shown"] == 7


def test_a_missing_model_is_named(trained):
    (paths.model_dir(SHALLOW) / train.FINAL_KERAS).unlink()
    with pytest.raises(FileNotFoundError, match="model.keras: missing; train shallownet_toy"):
        predict.run(LOAD, trained)
    assert not (paths.report_dir(LOAD) / "predictions.png").exists()


@pytest.mark.parametrize(
    ("prediction", "message"),
    [
        ({"chapter": 13, "experiment": "nope"}, r"predictions.shallownet_load_toy.experiment"),
        ({"chapter": 13, "experiment": "knn_toy"}, r"not one of the Keras experiments"),
        ({"chapter": 13, "experiment": SHALLOW, "samples": 0}, r"samples: expected"),
        ({"chapter": 13, "experiment": SHALLOW, "colour": 1}, r"colour: unknown key"),
        (
            {"chapter": 13, "experiment": SHALLOW, "dataset": "mnist"},
            r"predictions.shallownet_load_toy.dataset: expected 'toy', the dataset of experiment",
        ),
    ],
)
def test_prediction_settings_are_checked(prediction, message):
    with pytest.raises(ConfigError, match=message):
        params_with(prediction)


def test_grid_of_fewer_tiles_than_a_row():
    tiles = [np.zeros((predict.TILE + 40, predict.TILE, 3), np.uint8)] * 3
    assert predict._grid(tiles).shape == (predict.TILE + 40, 3 * predict.TILE, 3)

"""Trained models as MLflow Models: the real train stage logs them, the real `mlflow models
predict` CLI scores a saved test-image batch with them, and `mlflow.register` registers one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import joblib
import keras
import numpy as np
import pytest
from mlflow import MlflowClient

from dl4cv.config import ConfigError, parse_params
from dl4cv.pipeline import evaluate, train
from dl4cv.runtime import paths
from dl4cv.tracking import run_record
from dl4cv.training.inputs import scale_pixels
from tests.conftest import migrated_store
from tests.test_train_stage import KNN, RAW_PARAMS, SHALLOW, held_out, make_params, write_project

MLFLOW = str(Path(sys.executable).with_name("mlflow"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Both toy experiments trained and evaluated, the shallownet's model registered."""
    root = tmp_path_factory.mktemp("models")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    shutil.copyfile(migrated_store(tmp_path_factory), root / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        write_project(Path("."))
        params = parse_params(RAW_PARAMS | {"mlflow": {"register": [SHALLOW]}})
        runs = {}
        for exp_id in (KNN, SHALLOW):
            runs[exp_id] = train.run(exp_id, params)["run_id"]
            evaluate.run(exp_id, params)
        evaluate.run(SHALLOW, params)  # a rerun registers no second version
    return SimpleNamespace(root=root, uri=uri, client=MlflowClient(uri), runs=runs)


def cli_predict(trained, run_id: str, batch: dict) -> np.ndarray:
    """`mlflow models predict` on a batch saved as JSON, as a user runs it."""
    (trained.root / "batch.json").write_text(json.dumps(batch))
    env = {**os.environ, "MLFLOW_TRACKING_URI": trained.uri}
    done = subprocess.run(
        [MLFLOW, "models", "predict", "-m", f"runs:/{run_id}/{run_record.MODEL}"]
        + ["-i", "batch.json", "-t", "json", "-o", "out.json", "--env-manager", "local"],
        cwd=trained.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return np.asarray(json.loads((trained.root / "out.json").read_text())["predictions"])


def test_the_cli_predicts_what_the_network_predicts(trained):
    x_test, _ = held_out(trained.root)
    batch = scale_pixels(x_test[:4])
    predicted = cli_predict(trained, trained.runs[SHALLOW], {"inputs": batch.tolist()})
    model = keras.models.load_model(trained.root / paths.model_dir(SHALLOW) / train.FINAL_KERAS)
    expected = model.predict(batch, verbose=0)
    np.testing.assert_allclose(predicted, expected, rtol=1e-5, atol=1e-6)


def test_the_cli_predicts_what_the_knn_predicts(trained):
    x_test, _ = held_out(trained.root)
    batch = x_test[:4].reshape(4, -1)
    predicted = cli_predict(trained, trained.runs[KNN], {"inputs": batch.tolist()})
    model = joblib.load(trained.root / paths.model_dir(KNN) / train.FINAL_KNN)
    np.testing.assert_array_equal(predicted, model.predict(batch))


@pytest.mark.parametrize("exp_id", [KNN, SHALLOW])
def test_the_model_has_a_signature_and_test_images_as_input_example(trained, exp_id):
    run_id = trained.runs[exp_id]
    (logged,) = trained.client.search_logged_models(
        experiment_ids=[trained.client.get_run(run_id).info.experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
    )
    assert logged.name == run_record.MODEL
    folder = Path(trained.client.download_artifacts(run_id, run_record.MODEL, str(trained.root)))
    mlmodel = (folder / "MLmodel").read_text()
    assert "signature:" in mlmodel
    example = np.asarray(json.loads((folder / "input_example.json").read_text()))
    x_test, _ = held_out(trained.root)
    shown = x_test[: train.EXAMPLES]
    expected = scale_pixels(shown) if exp_id == SHALLOW else shown.reshape(len(shown), -1)
    np.testing.assert_allclose(example, expected, rtol=1e-6)


def test_register_puts_the_chosen_model_in_the_registry(trained):
    (version,) = trained.client.search_model_versions(f"name = '{SHALLOW}'")
    assert version.run_id == trained.runs[SHALLOW]
    assert int(version.version) == 1
    assert trained.client.search_model_versions(f"name = '{KNN}'") == []


def test_register_names_declared_experiments_only():
    with pytest.raises(ConfigError, match=r"mlflow.register: 'nope' is not one of the declared"):
        parse_params(RAW_PARAMS | {"mlflow": {"register": ["nope"]}})
    with pytest.raises(ConfigError, match=r"mlflow.register: expected a list"):
        parse_params(RAW_PARAMS | {"mlflow": {"register": SHALLOW}})
    assert make_params().mlflow.register == ()


@pytest.mark.parametrize(
    ("exp_id", "pinned"),
    [(KNN, ["mlflow", "scikit-learn", "skops", "numpy"]), (SHALLOW, ["mlflow", "keras", "numpy"])],
)
def test_the_model_pins_the_installed_versions_of_what_it_needs(trained, exp_id, pinned):
    from importlib.metadata import version

    run_id = trained.runs[exp_id]
    folder = Path(trained.client.download_artifacts(run_id, run_record.MODEL, str(trained.root)))
    lines = (folder / "requirements.txt").read_text().split()
    for dist in pinned:
        assert f"{dist}=={version(dist)}" in lines, lines
    if exp_id == SHALLOW:  # and the backend Keras ran on, by its distribution's name
        backend = keras.backend.backend()
        assert any(line.startswith(backend) for line in lines), lines

"""The ch 17 TrainingMonitor and ch 18 per-improvement checkpoints through the train stage,
across a kill and a resume; the ch 22 balanced class weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dl4cv.pipeline import evaluate, train
from dl4cv.runtime import paths
from dl4cv.runtime.fileio import read_json, write_json
from dl4cv.training.checkpoints import BestCheckpoint, improvement_epoch
from dl4cv.training.fit import IMPROVEMENTS_DIR
from dl4cv.training.inputs import balanced_class_weights
from dl4cv.training.state import STATE_FILE
from tests.test_train_stage import (
    SHALLOW,
    Killed,
    killing_metrics_callback,
    make_params,
    write_project,
)

EPOCHS = 4
WATCHED = {
    "train": {
        "batch_size": 8,
        "epochs": EPOCHS,
        "training_monitor": True,
        "checkpoint": "improvements",
        "checkpoint_interval_s": 0,  # every epoch: the kill test counts epochs
    }
}


@pytest.fixture
def fresh_project(in_tmp: Path, mlflow_store: str) -> Path:
    write_project(in_tmp)
    return in_tmp


def val_losses_in_names(folder) -> list[tuple[int, float]]:
    names = sorted(p.name for p in folder.glob("*.weights.h5"))
    return [
        (improvement_epoch(folder / n), float(n.split("-")[2].removesuffix(".weights.h5")))
        for n in names
    ]


def test_monitor_and_improvements_continue_across_a_resume(fresh_project, monkeypatch):
    params = make_params(**{SHALLOW: WATCHED})
    monitor = paths.monitor_dir(SHALLOW)
    improvements = paths.resume_dir(SHALLOW) / IMPROVEMENTS_DIR
    with monkeypatch.context() as mp:
        mp.setattr("dl4cv.training.callbacks.MLflowMetrics", killing_metrics_callback(2))
        with pytest.raises(Killed):
            train.run(SHALLOW, params)
    assert read_json(paths.resume_dir(SHALLOW) / STATE_FILE)["completed"] == 2
    watched = read_json(monitor / "history.json")
    assert len(watched["loss"]) == 2 and (monitor / "curves.png").stat().st_size > 0
    before = val_losses_in_names(improvements)
    assert before and all(epoch <= 2 for epoch, _ in before)

    # What a kill between an epoch's end and its checkpoint leaves: the monitor and a
    # per-improvement file already hold epoch 3, the saved state does not.
    write_json(monitor / "history.json", {k: v + [123.0] for k, v in watched.items()})
    stale = improvements / "weights-003-0.0001.weights.h5"
    stale.write_bytes(b"epoch 3 of the killed run")

    info = train.run(SHALLOW, params)
    assert info["epochs"] == EPOCHS
    history = read_json(paths.model_dir(SHALLOW) / train.HISTORY_FILE)
    resumed = read_json(monitor / "history.json")
    assert len(resumed["loss"]) == EPOCHS
    assert resumed["loss"][:2] == watched["loss"]
    assert 123.0 not in resumed["val_loss"]
    assert resumed["val_loss"] == pytest.approx(history["val_loss"])
    assert not stale.exists()

    after = val_losses_in_names(paths.model_dir(SHALLOW) / IMPROVEMENTS_DIR)
    assert after[: len(before)] == before
    epochs = [e for e, _ in after]
    assert epochs == sorted(set(epochs))
    # One file per improvement of val_loss, named with that epoch's value (4 decimals).
    running_best = np.minimum.accumulate(history["val_loss"])
    improved = [i + 1 for i, v in enumerate(history["val_loss"]) if v <= running_best[i]]
    assert epochs == improved
    for epoch, value in after:
        assert value == pytest.approx(history["val_loss"][epoch - 1], abs=5e-5)

    metrics = evaluate.run(SHALLOW, params)
    assert metrics["improvement_checkpoints"] == len(after)
    assert metrics["best_val_loss"] == min(history["val_loss"])
    assert metrics["best_val_loss_epoch"] == int(np.argmin(history["val_loss"])) + 1
    assert json.loads((paths.report_dir(SHALLOW) / "metrics.json").read_text()) == metrics


def test_a_fresh_training_starts_an_empty_improvements_folder(fresh_project):
    params = make_params(**{SHALLOW: WATCHED})
    improvements = paths.resume_dir(SHALLOW) / IMPROVEMENTS_DIR
    improvements.mkdir(parents=True)
    (improvements / "weights-001-9.0000.weights.h5").write_bytes(b"another training's file")
    train.run(SHALLOW, params)
    assert all(p.stat().st_size > 1000 for p in improvements.glob("*.h5"))


def test_monitor_off_leaves_an_empty_declared_folder(fresh_project):
    stale = paths.monitor_dir(SHALLOW) / "history.json"
    stale.parent.mkdir(parents=True)
    stale.write_text('{"loss": [9.0]}')  # left by an earlier training with the monitor on
    train.run(SHALLOW, make_params())
    assert paths.monitor_dir(SHALLOW).is_dir()
    assert list(paths.monitor_dir(SHALLOW).iterdir()) == []
    assert not (paths.model_dir(SHALLOW) / IMPROVEMENTS_DIR).exists()


def test_balanced_class_weights_match_the_books_smile_weights():
    labels = np.array([0] * 9475 + [1] * 3690)
    weights = balanced_class_weights(labels, 2)
    assert weights[0] == 1.0
    assert weights[1] == pytest.approx(2.5678, abs=1e-4)  # the book prints [1, 2.56]


def test_balanced_class_weights_name_an_empty_class():
    with pytest.raises(ValueError, match=r"classes \[2\]"):
        balanced_class_weights(np.array([0, 1, 1]), 3)


def test_class_weights_reach_the_fit(fresh_project, monkeypatch):
    seen = {}
    import keras

    original = keras.Model.fit

    def spy(self, *args, **kwargs):
        seen["class_weight"] = kwargs.get("class_weight")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy)
    train.run(SHALLOW, make_params(**{SHALLOW: {"train": {"class_weight": "balanced"}}}))
    assert seen["class_weight"] == {0: 1.0, 1: 1.0, 2: 1.0}  # the toy classes are balanced


def test_weights_only_checkpoints_need_the_weights_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        BestCheckpoint(tmp_path / "best.keras", weights_only=True)
    with pytest.raises(ValueError, match=r"\.keras"):
        BestCheckpoint(tmp_path / "best.weights.h5")

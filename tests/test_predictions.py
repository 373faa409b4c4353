"""predictions.npz: what train saves of the test split and evaluate scores, round-tripped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dl4cv.training.predictions import PREDICTIONS_FILE, Predictions

CLASSES = ["cats", "dogs", "panda"]
Y_TRUE = np.array([0, 1, 2, 2], dtype=np.int64)
SOFTMAX = np.array(
    [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.1, 0.4], [0.0, 0.1, 0.9]], dtype=np.float32
)


def test_a_network_s_outputs_round_trip_exactly(tmp_path: Path):
    best = SOFTMAX[:, ::-1].copy()
    Predictions(Y_TRUE, CLASSES, SOFTMAX, best).save(tmp_path / PREDICTIONS_FILE)
    loaded = Predictions.load(tmp_path / PREDICTIONS_FILE)
    assert loaded.classes == CLASSES and all(type(c) is str for c in loaded.classes)
    assert loaded.y_true.dtype == np.int64 and loaded.final.dtype == np.float32
    np.testing.assert_array_equal(loaded.y_true, Y_TRUE)
    np.testing.assert_array_equal(loaded.final, SOFTMAX)
    np.testing.assert_array_equal(loaded.best, best)
    assert loaded.predicted("final").tolist() == [0, 1, 0, 2]  # the argmax of each row
    assert loaded.predicted("best").tolist() == [2, 1, 2, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [PREDICTIONS_FILE]  # no temp file left


def test_k_nn_labels_are_their_own_predictions(tmp_path: Path):
    labels = np.array([0, 1, 1, 2])
    Predictions(Y_TRUE, CLASSES, labels).save(tmp_path / PREDICTIONS_FILE)
    loaded = Predictions.load(tmp_path / PREDICTIONS_FILE)
    assert loaded.best is None
    np.testing.assert_array_equal(loaded.predicted(), labels)
    with pytest.raises(ValueError, match="no outputs of the best model"):
        loaded.predicted("best")


def test_a_missing_file_says_which_stage_writes_it(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="predictions.npz: missing; run the train stage"):
        Predictions.load(tmp_path / PREDICTIONS_FILE)

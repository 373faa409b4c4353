"""The classification report (against scikit-learn), confusion matrix, curves and history CSV."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
)

from dl4cv import evaluation

CLASSES = ["cats", "dogs", "panda", "zebra"]  # nobody predicts "zebra" and it has no sample
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
Y_PRED = np.array([0, 0, 1, 2, 1, 1, 0, 2, 2, 2, 1, 2])
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_png(path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} is not a decodable image"
    return image


def assert_real_plot(image: np.ndarray) -> None:
    assert image.shape[0] >= 200 and image.shape[1] >= 200
    assert image.std() > 5  # not a blank canvas


def test_classification_metrics_match_sklearn():
    m = evaluation.classification_metrics(Y_TRUE, Y_PRED, CLASSES)
    labels = list(range(len(CLASSES)))
    kw = {"labels": labels, "zero_division": 0}
    assert m["accuracy"] == pytest.approx(accuracy_score(Y_TRUE, Y_PRED))
    assert m["accuracy"] == pytest.approx(8 / 12)
    assert m["precision_weighted"] == pytest.approx(
        precision_score(Y_TRUE, Y_PRED, average="weighted", **kw)
    )
    assert m["recall_weighted"] == pytest.approx(
        recall_score(Y_TRUE, Y_PRED, average="weighted", **kw)
    )
    assert m["f1_weighted"] == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="weighted", **kw))
    assert m["precision_macro"] == pytest.approx(
        precision_score(Y_TRUE, Y_PRED, average="macro", **kw)
    )
    assert m["recall_macro"] == pytest.approx(recall_score(Y_TRUE, Y_PRED, average="macro", **kw))
    assert m["f1_macro"] == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="macro", **kw))
    assert m["support"] == len(Y_TRUE)
    # The book's headline is weighted precision, which differs from accuracy here.
    assert m["precision_weighted"] != pytest.approx(m["accuracy"])


def test_classification_metrics_per_class():
    m = evaluation.classification_metrics(Y_TRUE, Y_PRED, CLASSES)
    assert list(m["per_class"]) == CLASSES
    precision, recall, f1, support = precision_recall_fscore_support(
        Y_TRUE, Y_PRED, labels=list(range(len(CLASSES))), zero_division=0
    )
    for i, name in enumerate(CLASSES):
        row = m["per_class"][name]
        assert set(row) == {"precision", "recall", "f1", "support"}
        assert row["precision"] == pytest.approx(precision[i])
        assert row["recall"] == pytest.approx(recall[i])
        assert row["f1"] == pytest.approx(f1[i])
        assert row["support"] == support[i]
        assert isinstance(row["support"], int)
    assert m["per_class"]["cats"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["zebra"] == {"precision": 0, "recall": 0, "f1": 0, "support": 0}


def test_classification_metrics_perfect_and_json_ready():
    import json

    y = np.array([0, 1, 2, 1])
    m = evaluation.classification_metrics(y, y, ["a", "b", "c"])
    assert m["accuracy"] == 1.0
    assert m["precision_weighted"] == 1.0
    json.dumps(m)  # metrics.json must be writable as is


def test_report_text_names_every_class():
    text = evaluation.report_text(Y_TRUE, Y_PRED, CLASSES)
    for name in [*CLASSES, "accuracy", "weighted avg", "macro avg"]:
        assert name in text
    cats = next(line for line in text.splitlines() if line.strip().startswith("cats"))
    assert "0.6667" in cats  # four digits, as the report shows them


def test_confusion_matrix_png(tmp_path):
    path = tmp_path / "sub" / "confusion_matrix.png"
    matrix = evaluation.plot_confusion_matrix(path, Y_TRUE, Y_PRED, CLASSES, "title")
    np.testing.assert_array_equal(matrix, confusion_matrix(Y_TRUE, Y_PRED, labels=[0, 1, 2, 3]))
    assert matrix.shape == (4, 4)
    assert matrix.trace() == 8
    assert_real_plot(read_png(path))
    assert sorted(p.name for p in path.parent.iterdir()) == ["confusion_matrix.png"]


def test_confusion_matrix_png_for_many_classes_grows(tmp_path):
    small = tmp_path / "small.png"
    large = tmp_path / "large.png"
    evaluation.plot_confusion_matrix(small, Y_TRUE, Y_PRED, CLASSES, "small")
    many = [f"c{i}" for i in range(12)]
    y = np.arange(24) % 12
    evaluation.plot_confusion_matrix(large, y, y, many, "large")
    assert read_png(large).shape[0] > read_png(small).shape[0]


HISTORY = {
    "loss": [1.2, 0.9, 0.7],
    "val_loss": [1.3, 1.0, 0.95],
    "accuracy": [0.4, 0.6, 0.75],
    "val_accuracy": [0.35, 0.55, 0.6],
    "lr": [0.01, 0.01, 0.01],
}


def test_curves_png(tmp_path):
    path = tmp_path / "curves.png"
    evaluation.plot_curves(path, HISTORY, "shallownet (ch 12)")
    image = read_png(path)
    assert_real_plot(image)
    assert image.shape[:2] == (500, 800)  # 8x5 inches at 100 dpi
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]


def test_curves_png_without_epochs(tmp_path):
    """k-NN has no training epochs: the plot still exists and says so."""
    empty, full = tmp_path / "empty.png", tmp_path / "full.png"
    evaluation.plot_curves(empty, {}, "knn (ch 7)")
    evaluation.plot_curves(full, HISTORY, "knn (ch 7)")
    a, b = read_png(empty), read_png(full)
    assert a.shape == b.shape
    assert not np.array_equal(a, b)


def test_history_csv(tmp_path):
    path = tmp_path / "history.csv"
    evaluation.history_csv(path, HISTORY)
    rows = list(csv.reader(path.read_text().splitlines()))
    assert rows[0] == ["epoch", *sorted(HISTORY)]
    assert len(rows) == 1 + len(HISTORY["loss"])
    assert [int(r[0]) for r in rows[1:]] == [1, 2, 3]
    for i, row in enumerate(rows[1:]):
        for key, value in zip(rows[0][1:], row[1:], strict=True):
            assert float(value) == HISTORY[key][i]


def test_history_csv_without_epochs(tmp_path):
    path = tmp_path / "history.csv"
    evaluation.history_csv(path, {})
    assert list(csv.reader(path.read_text().splitlines())) == [["epoch"]]

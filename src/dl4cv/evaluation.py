"""The book's classification report, plus a confusion matrix and training curves as PNGs."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import classification_report, confusion_matrix  # noqa: E402

from dl4cv.runtime.fileio import atomic_path, write_text  # noqa: E402

CURVES = ("loss", "val_loss", "accuracy", "val_accuracy")


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, weighted/macro averages (the book's headline is weighted precision) and
    per-class precision, recall, F1 and support."""
    labels = list(range(len(classes)))
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=classes, output_dict=True, zero_division=0
    )
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "precision_weighted": report["weighted avg"]["precision"],
        "recall_weighted": report["weighted avg"]["recall"],
        "f1_weighted": report["weighted avg"]["f1-score"],
        "precision_macro": report["macro avg"]["precision"],
        "recall_macro": report["macro avg"]["recall"],
        "f1_macro": report["macro avg"]["f1-score"],
        "support": int(len(y_true)),
        "per_class": {
            name: {
                "precision": report[name]["precision"],
                "recall": report[name]["recall"],
                "f1": report[name]["f1-score"],
                "support": int(report[name]["support"]),
            }
            for name in classes
        },
    }


def report_text(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> str:
    return classification_report(
        y_true,
        y_pred,
        labels=list(range(len(classes))),
        target_names=classes,
        digits=4,
        zero_division=0,
    )


def plot_confusion_matrix(
    path: Path, y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], title: str
) -> np.ndarray:
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(len(classes))))
    size = max(4.0, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            str(value),
            ha="center",
            va="center",
            color="white" if value > threshold else "black",
            fontsize=8,
        )
    _save(fig, path)
    return matrix


def plot_curves(path: Path, history: dict[str, list[float]], title: str) -> None:
    """Loss and accuracy per epoch, training and validation, as the book plots them."""
    fig, ax = plt.subplots(figsize=(8, 5))
    epochs = range(1, len(history.get("loss", [])) + 1)
    for key in CURVES:
        if key in history:
            ax.plot(epochs, history[key], label=key)
    if not history.get("loss"):
        ax.text(
            0.5,
            0.5,
            "no training epochs (e.g. k-NN)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss / accuracy")
    ax.set_title(title)
    if history.get("loss"):
        ax.legend()
    _save(fig, path)


def plot_learning_rates(path: Path | str, rates: dict[str, list[float]], title: str) -> None:
    """One line per named schedule, epoch on x (1-based, as the curves plots count): the
    book's ch 16 plot of a step decay; a run without epochs (k-NN) gets an empty plot."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, values in rates.items():
        ax.plot(range(1, len(values) + 1), values, label=name, drawstyle="steps-post")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title(title)
    if rates:
        ax.legend()
    _save(fig, Path(path))


def plot_message(path: Path, message: str, title: str) -> None:
    """A figure that only says why there is nothing to plot (a stage waiting for its data),
    so every declared plot exists and a reader sees the reason where the plot would be."""
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_title(title)
    _save(fig, path)


def history_csv(path: Path, history: dict[str, list[float]]) -> None:
    keys = sorted(history)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["epoch", *keys])
    for i in range(len(history.get("loss", []))):
        writer.writerow([i + 1, *(history[k][i] for k in keys)])
    write_text(path, buffer.getvalue())


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)

"""The book's from-scratch and non-training examples (ch 8-11, 19), one runner per `kind`.

Each runner does one job: it reads its exercise's settings, writes its figures into the folder
it is given and returns an `Outcome` (numbers, a text report, per-epoch series). The pipeline
step `dl4cv.pipeline.exercise` wraps every runner the same way: the MLflow run, metrics.json,
report.txt, history.csv. The helpers here are the few things several runners share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dl4cv.config import ConfigError, Exercise
from dl4cv.data.formats import ProcessedDataset
from dl4cv.data.splits import Split
from dl4cv.evaluation import plt
from dl4cv.runtime.fileio import atomic_path, read_json
from dl4cv.runtime.paths import processed_file, split_file

# The two-input truth tables of ch 10, rows in the book's order.
BITS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
TRUTH_TABLES = {
    "or": np.array([0, 1, 1, 1]),
    "and": np.array([0, 0, 0, 1]),
    "xor": np.array([0, 1, 1, 0]),
}


@dataclass
class Outcome:
    """What a runner found. `metrics` holds numbers only (nested dicts of numbers allowed)."""

    metrics: dict[str, Any]
    report: str
    history: dict[str, list[float]] = field(default_factory=dict)  # one value per epoch
    tags: dict[str, str] = field(default_factory=dict)


def setting_error(exercise: Exercise, key: str, problem: str) -> ConfigError:
    """A settings value that only the data shows to be wrong, named by its params.yaml path."""
    return ConfigError(f"exercises.{exercise.id}.{key}: {problem}")


def load_dataset(exercise: Exercise) -> ProcessedDataset:
    assert exercise.dataset is not None  # config.Exercise checks kinds that read one
    return ProcessedDataset.load(processed_file(exercise.dataset))


def shared_split(dataset: str) -> Split:
    """The split stage's indices, the ones every experiment on `dataset` uses."""
    path = split_file(dataset)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; run the split stage first (dvc repro)")
    return Split.from_json(read_json(path))


def bit_key(row: np.ndarray) -> str:
    """`0_1` for the input row (0, 1): a metrics key per truth-table row."""
    return "_".join(str(int(v)) for v in row)


def save_figure(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def plot_series(path: Path, series: dict[str, list[float]], title: str, ylabel: str) -> None:
    """Values per epoch (the book's loss plots); a log scale when they span decades."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, values in series.items():
        ax.plot(range(1, len(values) + 1), values, label=name)
    values = np.concatenate([np.asarray(v, dtype=float) for v in series.values()])
    if values.min() > 0 and values.max() / values.min() > 1e3:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend()
    save_figure(fig, path)


def plot_decision_line(
    path: Path, X: np.ndarray, y: np.ndarray, weights: np.ndarray, title: str
) -> None:
    """2-D points coloured by class and the line w1 x1 + w2 x2 + b = 0 a linear unit draws
    (`weights` = [w1, w2, b], the bias trick's layout)."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(X[:, 0], X[:, 1], c=y, cmap="coolwarm", s=30, edgecolors="k", linewidths=0.3)
    w1, w2, b = (float(w) for w in weights)
    low, high = X.min(axis=0), X.max(axis=0)
    pad = 0.1 * np.maximum(high - low, 1.0)
    xs = np.linspace(low[0] - pad[0], high[0] + pad[0], 2)
    if abs(w2) > 1e-12:
        ax.plot(xs, -(w1 * xs + b) / w2, "k--", label="decision boundary")
    elif abs(w1) > 1e-12:
        ax.axvline(-b / w1, color="k", linestyle="--", label="decision boundary")
    ax.set_xlim(low[0] - pad[0], high[0] + pad[0])
    ax.set_ylim(low[1] - pad[1], high[1] + pad[1])
    ax.set_title(title)
    ax.legend(loc="best")
    save_figure(fig, path)

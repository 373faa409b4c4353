"""Training inputs as the networks take them: float32 pixels in [0, 1], int32 labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dl4cv.data.formats import ProcessedDataset
from dl4cv.data.splits import Split


@dataclass
class Arrays:
    """Training inputs as the models take them: float32 pixels in [0, 1], int32 labels (JAX
    runs in 32 bits and would truncate int64 with a warning)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: list[str]


def scale_pixels(images: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1], as every network here is trained and evaluated."""
    return images.astype(np.float32) / 255.0


def balanced_class_weights(labels: np.ndarray, classes: int) -> dict[int, float]:
    """Weight each class by (largest class count / its count): the book's ch 22 weights the
    rarer smiling faces 2.56 against 1 for the 9,475 / 3,690 SMILES counts."""
    counts = np.bincount(np.asarray(labels).reshape(-1), minlength=classes)
    if (counts == 0).any():
        missing = [int(c) for c in np.flatnonzero(counts == 0)]
        raise ValueError(f"class_weight balanced: classes {missing} have no training example")
    return {c: float(counts.max() / n) for c, n in enumerate(counts)}


def arrays_for(processed: ProcessedDataset, split: Split) -> Arrays:
    """Scale pixels to [0, 1]; validate on the val part if the split has one, else on test
    (as the book does)."""
    val = split.val or split.test

    return Arrays(
        scale_pixels(processed.images[split.train]),
        processed.labels[split.train].astype(np.int32),
        scale_pixels(processed.images[val]),
        processed.labels[val].astype(np.int32),
        processed.classes,
    )

"""k-NN (ch 7): scikit-learn's KNeighborsClassifier on raw flattened pixel intensities."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import KNeighborsClassifier

from dl4cv.config import ModelSpec


def fit_knn(spec: ModelSpec, x: np.ndarray, y: np.ndarray) -> KNeighborsClassifier:
    """The book's k-NN (ch 7) on raw flattened pixel intensities."""
    model = KNeighborsClassifier(n_neighbors=spec.n_neighbors, metric=spec.metric, n_jobs=-1)
    return model.fit(x.reshape(len(x), -1), y)

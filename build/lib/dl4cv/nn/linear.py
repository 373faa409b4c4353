"""Linear scoring f(x) = W x + b (ch 8, experiment `linear_scoring`).

The book does not train this classifier: it draws W and b at random from a fixed seed and shows
that scoring is one matrix-vector product. To keep our scores comparable with the book's, W and b
are drawn exactly as `np.random.seed(seed); W = np.random.randn(classes, dim); b =
np.random.randn(classes)` would draw them, but from a private `RandomState` so that no global
NumPy state is touched.
"""

from __future__ import annotations

import numpy as np


class LinearClassifier:
    """Scores `classes` labels for `dim`-dimensional inputs with seeded random weights."""

    def __init__(self, dim: int, classes: int, seed: int = 1) -> None:
        if dim < 1 or classes < 1:
            raise ValueError(f"dim and classes must be positive, got {dim} and {classes}")
        # RandomState(seed) is the same Mersenne-Twister stream as np.random.seed(seed); W is
        # drawn before b, as in the book, so b continues the stream where W left it.
        rng = np.random.RandomState(seed)
        self.W: np.ndarray = rng.randn(classes, dim)
        self.b: np.ndarray = rng.randn(classes)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Class scores: shape (classes,) for one vector, (n, classes) for a batch of rows."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != self.W.shape[1]:
            raise ValueError(f"expected inputs of dimension {self.W.shape[1]}, got {x.shape}")
        return x @ self.W.T + self.b

    def predict(self, x: np.ndarray) -> np.ndarray | np.intp:
        """Index of the highest score (per row for a batch)."""
        return np.argmax(self.scores(x), axis=-1)

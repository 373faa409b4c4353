"""Sigmoid classifiers trained by gradient descent from scratch (ch 9, `gd_blobs` / `sgd_blobs`).

The model is p = sigmoid(X W) on inputs with a constant 1 appended (the bias trick: the bias is
the last row of W). The book's scripts minimise the squared error sum (p - y)^2 and step along
X^T [(p - y) * p (1 - p)]. That is the true gradient up to a factor 2 which the book folds into
alpha; we keep the book's step so the same alpha gives the same trajectory.

Losses are recorded as in the book, before each update:
- full batch: the epoch's loss is the sum of squared errors over the whole training set;
- mini-batch: the epoch's loss is the mean, over its batches, of each batch's squared-error sum,
  so it is on a per-batch scale and not comparable with the full-batch figure.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)).

    scipy's expit computes exactly this without overflowing for large |x|, and is several times
    faster than a clipped NumPy expression on the tiny arrays of online backprop.
    """
    return expit(x)


def sigmoid_deriv(activation: np.ndarray) -> np.ndarray:
    """d sigmoid / d x written in terms of the activation a = sigmoid(x): a (1 - a)."""
    return activation * (1.0 - activation)


def add_bias(X: np.ndarray) -> np.ndarray:
    """Append a column of ones so the bias is learned as one more weight."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    return np.hstack([X, np.ones((X.shape[0], 1))])


class GradientDescent:
    """Full-batch gradient descent on a single sigmoid unit with squared loss."""

    def __init__(self, alpha: float = 0.01, epochs: int = 100, seed: int | None = None) -> None:
        if alpha <= 0 or epochs < 1:
            raise ValueError(f"alpha must be > 0 and epochs >= 1, got {alpha}, {epochs}")
        self.alpha = alpha
        self.epochs = epochs
        self.seed = seed
        self.W: np.ndarray | None = None
        self.losses: list[float] = []

    def _init(self, n_features: int) -> np.random.Generator:
        rng = np.random.default_rng(self.seed)
        # Standard-normal start, bias included, as the book (its W is randn(dim + 1, 1)).
        self.W = rng.standard_normal(n_features + 1)
        self.losses = []
        return rng

    def _step(self, Xb: np.ndarray, y: np.ndarray) -> float:
        """One update on (Xb, y); returns the squared-error sum measured before it."""
        assert self.W is not None
        preds = sigmoid(Xb @ self.W)
        error = preds - y
        self.W = self.W - self.alpha * (Xb.T @ (error * sigmoid_deriv(preds)))
        return float(np.sum(error**2))

    @staticmethod
    def _targets(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Xb = add_bias(X)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if y.shape[0] != Xb.shape[0]:
            raise ValueError(f"{Xb.shape[0]} inputs but {y.shape[0]} targets")
        return Xb, y

    def fit(self, X: np.ndarray, y: np.ndarray) -> list[float]:
        """Train from a fresh initialisation; returns (and keeps in .losses) the loss per epoch."""
        Xb, y = self._targets(X, y)
        self._init(X.shape[1])
        for _ in range(self.epochs):
            self.losses.append(self._step(Xb, y))
        return self.losses

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.W is None:
            raise RuntimeError("call fit() first")
        return sigmoid(add_bias(X) @ self.W)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class 1 where the sigmoid output exceeds 0.5, else 0 (the book's threshold)."""
        return (self.predict_proba(X) > 0.5).astype(np.int64)


class StochasticGradientDescent(GradientDescent):
    """Mini-batch gradient descent: one update per batch of `batch_size` rows.

    The book's batch helper walks the data in a fixed order; `shuffle=True` (the default) draws a
    fresh order every epoch from `seed`, the usual practice. Pass `shuffle=False` for the book's.
    """

    def __init__(
        self,
        alpha: float = 0.01,
        epochs: int = 100,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__(alpha, epochs, seed)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.shuffle = shuffle

    def fit(self, X: np.ndarray, y: np.ndarray) -> list[float]:
        Xb, y = self._targets(X, y)
        rng = self._init(X.shape[1])
        for _ in range(self.epochs):
            order = rng.permutation(len(y)) if self.shuffle else np.arange(len(y))
            batch_losses = [
                self._step(Xb[idx], y[idx])
                for idx in np.array_split(order, range(self.batch_size, len(y), self.batch_size))
            ]
            self.losses.append(float(np.mean(batch_losses)))
        return self.losses

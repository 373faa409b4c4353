"""Rosenblatt's perceptron (ch 10, `perceptron_or` / `perceptron_and` / `perceptron_xor`).

A step function on w . [x, 1], trained one example at a time with the perceptron rule
w <- w + alpha (t - p) [x, 1], which changes w only on a mistake. It learns any linearly separable
truth table (OR, AND) and can never classify all four XOR rows: no line separates them.
"""

from __future__ import annotations

import numpy as np

from dl4cv.nn.gradient_descent import add_bias


def step(x: np.ndarray) -> np.ndarray:
    """1 where x > 0, else 0."""
    return (np.asarray(x) > 0).astype(np.int64)


class Perceptron:
    def __init__(self, n_inputs: int, alpha: float = 0.1, seed: int | None = None) -> None:
        if n_inputs < 1 or alpha <= 0:
            raise ValueError(f"n_inputs must be >= 1 and alpha > 0, got {n_inputs}, {alpha}")
        self.alpha = alpha
        rng = np.random.default_rng(seed)
        # Scaled by 1/sqrt(n) as in the book, so the initial w . x has unit-order variance.
        self.W: np.ndarray = rng.standard_normal(n_inputs + 1) / np.sqrt(n_inputs)

    def fit(self, X: np.ndarray, y: np.ndarray, epochs: int = 20) -> list[int]:
        """Online training in the given row order; returns the number of mistakes per epoch."""
        Xb = add_bias(X)
        targets = np.asarray(y).reshape(-1)
        if targets.shape[0] != Xb.shape[0]:
            raise ValueError(f"{Xb.shape[0]} inputs but {targets.shape[0]} targets")
        mistakes: list[int] = []
        for _ in range(epochs):
            wrong = 0
            for x, target in zip(Xb, targets, strict=True):
                error = target - int(step(x @ self.W))
                if error:
                    self.W = self.W + self.alpha * error * x
                    wrong += 1
            mistakes.append(wrong)
        return mistakes

    def predict(self, X: np.ndarray) -> np.ndarray:
        return step(add_bias(X) @ self.W)

"""Multi-class SVM hinge loss and softmax cross-entropy (ch 8, experiment `losses_worked`).

Written from the definitions so the book's worked tables can be recomputed exactly. Scores are
laid out one row per example, one column per class (the book prints its tables transposed:
one column per image).

- hinge: L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + delta)
- softmax: p_j = exp(s_j) / sum_k exp(s_k); cross-entropy: L_i = -ln p_{y_i}
"""

from __future__ import annotations

import numpy as np


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    labels = np.atleast_1d(np.asarray(labels)).astype(np.intp)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(
            f"need scores (n, classes) and labels (n,), got {scores.shape}, {labels.shape}"
        )
    if labels.min() < 0 or labels.max() >= scores.shape[1]:
        raise ValueError(f"labels must lie in [0, {scores.shape[1]}), got {labels}")
    return scores, labels


def hinge_losses(scores: np.ndarray, labels: np.ndarray, delta: float = 1.0) -> np.ndarray:
    """Per-example multi-class SVM hinge loss; shape (n,)."""
    scores, labels = _check(scores, labels)
    rows = np.arange(len(labels))
    correct = scores[rows, labels][:, None]
    margins = np.maximum(0.0, scores - correct + delta)
    # The true class would always contribute exactly `delta`; the definition sums over j != y_i.
    margins[rows, labels] = 0.0
    return margins.sum(axis=1)


def hinge_loss(scores: np.ndarray, labels: np.ndarray, delta: float = 1.0) -> float:
    """Mean multi-class SVM hinge loss over the examples."""
    return float(hinge_losses(scores, labels, delta).mean())


def softmax(scores: np.ndarray) -> np.ndarray:
    """Class probabilities along the last axis.

    The maximum is subtracted first: it cancels in the ratio but keeps exp() from overflowing on
    large scores such as the linear_scoring demo's thousands.
    """
    scores = np.asarray(scores, dtype=np.float64)
    exps = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return exps / exps.sum(axis=-1, keepdims=True)


def cross_entropy_losses(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-example cross-entropy -ln p_{y_i} of the softmax of `scores`; shape (n,)."""
    scores, labels = _check(scores, labels)
    # log-softmax directly, so a confident wrong answer gives a large finite loss, not inf.
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels]


def cross_entropy_loss(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean softmax cross-entropy over the examples."""
    return float(cross_entropy_losses(scores, labels).mean())

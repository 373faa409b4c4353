"""Backpropagation's arithmetic for the from-scratch network (ch 10): the forward pass, the
gradients by the chain rule, one descent step. Plain array code, shared by the NumPy loop
(nn.neuralnetwork) and the epochs JAX compiles from it (nn.compiled)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dl4cv.nn.gradient_descent import sigmoid, sigmoid_deriv

Weights = list[np.ndarray]


def forward(W: Weights, Xb: np.ndarray, activate: Callable = sigmoid) -> list[np.ndarray]:
    """Activations of every layer, input (with its bias column) first. Plain array arithmetic,
    so that `compiled` traces this very code with JAX's sigmoid."""
    activations = [Xb]
    for w in W:
        activations.append(activate(activations[-1] @ w))
    return activations


def backward(W: Weights, activations: list[np.ndarray], y: np.ndarray) -> list[np.ndarray]:
    """dL/dW for every layer, by the chain rule from the output back to the input."""
    delta = (activations[-1] - y) * sigmoid_deriv(activations[-1])
    grads: list[np.ndarray] = []
    for layer in range(len(W) - 1, -1, -1):
        grads.append(activations[layer].T @ delta)
        if layer > 0:
            delta = (delta @ W[layer].T) * sigmoid_deriv(activations[layer])
    return grads[::-1]


def descend(W: Weights, Xb: np.ndarray, y: np.ndarray, alpha: float) -> None:
    """One gradient step on the rows Xb, in place (NumPy)."""
    for w, grad in zip(W, backward(W, forward(W, Xb), y), strict=True):
        w -= alpha * grad

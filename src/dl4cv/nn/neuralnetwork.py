"""A from-scratch feedforward network trained by backpropagation (ch 10, `nn_xor` / `nn_digits`).

Every layer is a sigmoid of a weighted sum, the loss is 0.5 * sum((output - target)^2), and the
weights are updated by plain gradient descent, one example at a time by default (the book's
`fit` walks the training set row by row).

Weight shapes follow the book's bias trick so that results are comparable: the input gets a
constant 1 appended, and every hidden layer has one extra unit, so W[i] has shape
(layers[i] + 1, layers[i + 1] + 1) and the last one (layers[-2] + 1, layers[-1]). Note what this
means: the extra hidden unit is a learned sigmoid unit like the others, not a constant 1, so a
"2-2-1" network has three trainable hidden units and its output layer no constant bias input.

`fit` runs its epochs compiled by JAX on the CPU where JAX is installed (nn.compiled: the same
arithmetic, nn.backprop's `forward` and `backward`, about ten times faster), else in the NumPy
loop.
"""

from __future__ import annotations

import numpy as np

from dl4cv.nn import compiled
from dl4cv.nn.backprop import Weights, backward, descend, forward
from dl4cv.nn.gradient_descent import add_bias


class NeuralNetwork:
    def __init__(self, layers: list[int], alpha: float = 0.1, seed: int | None = None) -> None:
        if len(layers) < 2 or min(layers) < 1:
            raise ValueError(f"need at least an input and an output layer, got {layers}")
        self.layers = list(layers)
        self.alpha = alpha
        rng = np.random.default_rng(seed)
        shapes = [(n + 1, m + 1) for n, m in zip(layers[:-2], layers[1:-1], strict=True)]
        shapes.append((layers[-2] + 1, layers[-1]))
        # Scaled by 1/sqrt(fan-in) as in the book, keeping early sigmoids out of saturation.
        self.W: list[np.ndarray] = [
            rng.standard_normal(shape) / np.sqrt(shape[0] - 1) for shape in shapes
        ]
        self.engine: str | None = None  # what ran the last fit: "jax" (compiled) or "numpy"

    def __repr__(self) -> str:
        return f"NeuralNetwork: {'-'.join(str(n) for n in self.layers)}"

    @staticmethod
    def _targets(y: np.ndarray, n: int) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        y = y.reshape(n, -1) if y.ndim < 2 else y
        if y.shape[0] != n:
            raise ValueError(f"{n} inputs but {y.shape[0]} targets")
        return y

    def gradients(self, X: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        """Backpropagated gradients of calculate_loss(X, y) with respect to each W[i].

        Public so tests can compare them with finite differences of the loss.
        """
        Xb = add_bias(X)
        return backward(self.W, forward(self.W, Xb), self._targets(y, len(Xb)))

    def fit_partial(self, X: np.ndarray, y: np.ndarray) -> None:
        """One gradient step on (X, y): a single row (the book's online update) or a batch."""
        Xb = add_bias(X)
        descend(self.W, Xb, self._targets(y, len(Xb)), self.alpha)

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        epochs: int = 1000,
        display_update: int = 100,
        batch_size: int = 1,
    ) -> list[float]:
        """Train for `epochs` passes in row order; returns the training loss after every epoch.

        batch_size=1 is the book's online training; len(X) gives full-batch gradient descent.
        `display_update` > 0 prints the loss on the first epoch and every `display_update`-th,
        as each block of `display_update` epochs ends.
        """
        Xb = add_bias(X)
        y = self._targets(y, len(Xb))
        run = compiled.epochs(Xb, y, self.alpha, batch_size)
        self.engine = "jax" if run else "numpy"
        run = run or self._epochs(Xb, y, batch_size)
        chunk = display_update if display_update > 0 else epochs
        W: Weights = self.W
        losses: list[float] = []
        while len(losses) < epochs:
            done = len(losses)
            W, more = run(W, min(chunk, epochs - done))
            losses += more
            for epoch in range(done, len(losses)):
                if display_update > 0 and (epoch == 0 or (epoch + 1) % display_update == 0):
                    print(f"[INFO] epoch={epoch + 1}, loss={losses[epoch]:.7f}")
        self.W = [np.array(w) for w in W]
        return losses

    def _epochs(self, Xb: np.ndarray, y: np.ndarray, batch_size: int) -> compiled.Epochs:
        """The NumPy loop: in-place steps on slices cut once (millions of tiny online steps)."""
        batches = [
            (Xb[start : start + batch_size], y[start : start + batch_size])
            for start in range(0, len(Xb), batch_size)
        ]

        def numpy_epochs(W: Weights, n: int) -> tuple[Weights, list[float]]:
            losses = []
            for _ in range(n):
                for x_batch, y_batch in batches:
                    descend(W, x_batch, y_batch, self.alpha)
                losses.append(float(0.5 * np.sum((forward(W, Xb)[-1] - y) ** 2)))
            return W, losses

        return numpy_epochs

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Output-layer activations, one row per input (the book's `predict`)."""
        return forward(self.W, add_bias(X))[-1]

    def classify(self, X: np.ndarray) -> np.ndarray:
        """Labels: output > 0.5 for a single output unit, else the most active unit."""
        out = self.predict(X)
        if out.shape[1] == 1:
            return (out[:, 0] > 0.5).astype(np.int64)
        return out.argmax(axis=1)

    def calculate_loss(self, X: np.ndarray, y: np.ndarray) -> float:
        """0.5 * sum of squared errors over all rows and outputs."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        return float(0.5 * np.sum((self.predict(X) - self._targets(y, len(X))) ** 2))

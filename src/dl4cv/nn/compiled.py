"""The from-scratch network's epochs compiled by JAX, on the CPU.

The book's `fit` makes one gradient step per training row: nn_digits is 1,347 rows x 1,000
epochs, 1.35 million steps of tiny matrix products, in which a NumPy loop spends its time in
Python (53 s on the GPU machine's CPU, 33 s here). JAX traces the network's own arithmetic
(`backprop.forward` and `backward`, nothing re-derived) once, in float64, and runs each block
of epochs as one scan over the rows: 1,000 epochs in about 3 s. The CPU, not a GPU: steps this
small would wait on kernel launches. Without JAX (or one older than `jax.enable_x64`, 0.8, or
with its CPU platform switched off), `epochs` returns None and the NumPy loop runs; both give the
same losses to about 1e-12.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

Weights = list[Any]  # NumPy arrays in, JAX arrays between blocks
Epochs = Callable[[Weights, int], tuple[Weights, list[float]]]


def epochs(Xb: np.ndarray, y: np.ndarray, alpha: float, batch_size: int) -> Epochs | None:
    """run(W, n) -> (W after n more epochs, the loss after each), for rows Xb (bias column
    included) and targets y taken `batch_size` at a time in order; None without JAX."""
    try:
        import jax
        from jax import enable_x64
    except ImportError:
        return None
    from jax import lax
    from jax import numpy as jnp

    from dl4cv.nn.backprop import backward, forward

    try:
        cpu = jax.devices("cpu")[0]
    except Exception:  # no CPU backend (JAX_PLATFORMS without cpu, a broken install): NumPy
        return None
    full = len(Xb) // batch_size * batch_size  # rows in whole batches; the rest is one step

    def step(W: Weights, batch: tuple[Any, Any]) -> tuple[Weights, None]:
        x_batch, y_batch = batch
        grads = backward(W, forward(W, x_batch, jax.nn.sigmoid), y_batch)
        return [w - alpha * g for w, g in zip(W, grads, strict=True)], None

    @partial(jax.jit, static_argnums=3)
    def block(W: Weights, Xb: Any, y: Any, n: int) -> tuple[Weights, Any]:
        rows = (
            Xb[:full].reshape(-1, batch_size, Xb.shape[1]),
            y[:full].reshape(-1, batch_size, y.shape[1]),
        )

        def epoch(W: Weights, _: None) -> tuple[Weights, Any]:
            W, _ = lax.scan(step, W, rows)
            if full < len(Xb):
                W, _ = step(W, (Xb[full:], y[full:]))
            return W, 0.5 * jnp.sum((forward(W, Xb, jax.nn.sigmoid)[-1] - y) ** 2)

        return lax.scan(epoch, W, None, length=n)

    with enable_x64(True):
        data = jax.device_put((Xb, y), cpu)

    def run(W: Weights, n: int) -> tuple[Weights, list[float]]:
        with enable_x64(True):
            W, losses = block(jax.device_put(list(W), cpu), *data, n)
            return W, [float(loss) for loss in np.asarray(losses)]

    return run

"""Does the warm start work on a GPU with KERAS_BACKEND=jax? (issue 9 groundwork)

Run as a stage script would be: the first call runs cold and starts the server (which imports
Keras on JAX), later calls are forked from it. Each call fits a small MiniVGGNet on random data
on the GPU and prints its device, seconds and final loss, so a cold and a warm call can be set
side by side (same seed: same loss when the GPU run is deterministic).

    # once cold, then again warm
    KERAS_BACKEND=jax python bench/results/h200-2026-12-02-warmstart/gpu_warmstart_probe.py
"""

from __future__ import annotations

import sys
import time

from dl4cv.runtime import warmstart

started = time.perf_counter()
warmstart.hand_over()

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from dl4cv.nn.conv import MiniVGGNet  # noqa: E402

imported = time.perf_counter() - started
keras.utils.set_random_seed(42)
rng = np.random.default_rng(0)
x = rng.random((4096, 32, 32, 3), dtype=np.float32)
y = rng.integers(0, 10, 4096)
model = MiniVGGNet.build(32, 32, 3, 10)
model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
fit_started = time.perf_counter()
history = model.fit(x, y, batch_size=64, epochs=2, verbose=0)
print(
    f"{'warm' if warmstart._in_worker else 'cold'}: device {jax.devices()[0]}, "
    f"imports {imported:.1f} s, fit {time.perf_counter() - fit_started:.1f} s, "
    f"loss {history.history['loss'][-1]:.6f}",
    flush=True,
)
sys.exit(0)

"""The one place that knows which Keras backend runs: seeding and determinism per backend.

Model code stays plain Keras 3; only this module touches a backend's own API.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import numpy as np

ACCELERATORS = ("gpu", "tpu")  # jax.default_backend() names: CUDA and ROCm are both "gpu"
# Compilations faster than this are not worth a file: a rerun recompiles them in less time than
# it would read them (the LeNet/MiniVGGNet epochs take 1-20 s to compile on a GPU).
CACHE_MIN_COMPILE_SECONDS = 0.5


def name() -> str:
    """The Keras backend, read without importing Keras (and TensorFlow) when possible."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def accelerated() -> bool:
    """True when Keras runs on JAX and JAX computes on a GPU or TPU: where the scan runner and
    bfloat16 pay (on a CPU, or on TensorFlow, `model.fit` in float32 stays the default)."""
    if name() != "jax":
        return False
    import jax

    return jax.default_backend() in ACCELERATORS


def use_compile_cache(folder: Path) -> None:
    """Keep JAX's compiled programs in `folder`, so that a rerun or a resumed training loads
    them instead of compiling again (JAX only; the JAX_COMPILATION_CACHE_DIR and
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS variables win over these defaults)."""
    if name() != "jax":
        return
    import jax

    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        folder.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(folder))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_SECONDS)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the backend; on TensorFlow also ask for deterministic kernels,
    so the same params give the same metrics on CPU."""
    random.seed(seed)
    np.random.seed(seed)
    if "keras" not in sys.modules:  # k-NN stages never load Keras: nothing more to seed
        return
    import keras

    keras.utils.set_random_seed(seed)
    if name() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()

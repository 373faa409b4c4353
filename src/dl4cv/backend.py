"""The one place that knows which Keras backend runs: seeding and determinism per backend.

Model code stays plain Keras 3; only this module touches a backend's own API.
"""

from __future__ import annotations

import os
import random
import sys

import numpy as np


def name() -> str:
    """The Keras backend, read without importing Keras (and TensorFlow) when possible."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND", "tensorflow")


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

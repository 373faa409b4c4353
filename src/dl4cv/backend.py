"""The one place that knows which Keras backend runs: seeding and determinism per backend.

Model code stays plain Keras 3; only this module touches a backend's own API.
"""

from __future__ import annotations

import os

import keras


def name() -> str:
    return keras.backend.backend()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the backend; on TensorFlow also ask for deterministic kernels,
    so the same params give the same metrics on CPU."""
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    keras.utils.set_random_seed(seed)
    if name() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()

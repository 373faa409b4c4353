"""The one place that knows which Keras backend runs: seeding and determinism per backend.

Model code stays plain Keras 3; only this module touches a backend's own API.
"""

from __future__ import annotations

import os
import random
import re
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import numpy as np

ACCELERATORS = ("gpu", "tpu")  # jax.default_backend() names: CUDA and ROCm are both "gpu"
# Every compilation is kept: on a GPU even Keras's small eager ops (weight initializers, metric
# updates) take tens of milliseconds each to compile against about one to read, dozens of them
# per training, and most recur in every experiment of a `dvc repro` (epochs: 1-20 s each).
CACHE_MIN_COMPILE_SECONDS = 0.0


def name() -> str:
    """The Keras backend, read without importing Keras (and TensorFlow) when possible."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND", "tensorflow")


# What TensorFlow prints while it loads on some CPUs (oneDNN on, CPU features) even with
# TF_CPP_MIN_LOG_LEVEL=3 (tensorflow issue 100442): absl's C++ log lines and their notices.
LOAD_NOTICE = re.compile(
    r"^[IW]\d{4} |^WARNING: All log messages before absl::InitializeLog|^To enable the following"
)


def load_keras() -> ModuleType:
    """Import Keras (and so its backend) with the C++ notices of loading kept out of the stage's
    log: a person reads that log, and `I0000 ... oneDNN custom operations are on` reads as
    noise at best. Anything else written meanwhile is passed on; TF_CPP_MIN_LOG_LEVEL=0 shows
    everything."""
    if "keras" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        import keras

        return keras
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not LOAD_NOTICE.match(line):
                    sys.stderr.write(line)
    return keras


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

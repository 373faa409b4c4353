"""The GPUs of this machine, and how the processes of the pipeline share one.

JAX takes 75 % of a GPU's memory when it starts, TensorFlow all of it: a second process on the
same GPU (a parallel stage, `dvc queue start -j 3`) then fails to start. Every process that
imports dl4cv therefore takes GPU memory as it needs it, unless the user chose otherwise
(`share_by_default`, called when the package is imported, before any framework loads).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import MutableMapping

# JAX's own settings of its GPU memory: any of them set means the user has chosen.
JAX_MEMORY = (
    "XLA_PYTHON_CLIENT_PREALLOCATE",
    "XLA_PYTHON_CLIENT_MEM_FRACTION",
    "XLA_PYTHON_CLIENT_ALLOCATOR",
)


def share_by_default(environ: MutableMapping[str, str] = os.environ) -> None:
    """JAX allocates GPU memory on demand (XLA_PYTHON_CLIENT_PREALLOCATE=false) unless one of
    its memory settings is set; TensorFlow grows its use (TF_FORCE_GPU_ALLOW_GROWTH=true)
    unless that is set."""
    if not any(name in environ for name in JAX_MEMORY):
        environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")


def find_gpus() -> list[str]:
    """The indices of the GPUs `nvidia-smi -L` lists; none where there is no NVIDIA driver."""
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return []
    return re.findall(r"^GPU (\d+):", listed.stdout, re.M) if listed.returncode == 0 else []


def gpu_memory_gib() -> float:
    """The smallest total memory of the GPUs `nvidia-smi` lists, in GiB; 0 if it cannot say."""
    try:
        query = ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"]
        listed = subprocess.run(query, capture_output=True, text=True, timeout=60)
        return min(float(mib) for mib in listed.stdout.split()) / 1024
    except (OSError, subprocess.SubprocessError, ValueError):
        return 0.0

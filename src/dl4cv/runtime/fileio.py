"""Atomic writes: a killed stage never leaves a half file that DVC or the next stage trusts."""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    `suffix` keeps an extension that a writer insists on (Keras wants `.keras`, NumPy `.npz`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except Exception as exc:
        if _disk_full(exc):
            raise DiskFull(path) from exc
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


class DiskFull(OSError):
    """No room to write `path`; its previous version is intact (the write went to a
    temporary file beside it). The stage entry point prints it as one line."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            errno.ENOSPC,
            "no space left on the device; its previous version is intact. Free space and "
            "run `dvc repro` again (a training resumes from its last checkpoint)",
            str(path),
        )


def _disk_full(exc: BaseException | None) -> bool:
    """Whether `exc` (or what caused it: Keras and h5py wrap the OS error) is a full disk."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def remove_leftovers(path: str | Path, suffix: str | None = None) -> list[Path]:
    """Delete the temporary files that killed `atomic_path` writes of `path` left beside it
    (a kill -9 runs no cleanup); returns them. Call it only where no other process writes
    `path` at the same time: a stage, which DVC never runs twice at once."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    # mkstemp's names: the prefix, 8 random characters, the suffix
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}{re.escape(suffix or '.tmp')}")
    stale = sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))
    for leftover in stale:
        leftover.unlink(missing_ok=True)
    return stale


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())

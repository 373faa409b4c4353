"""Named arrays out of an .npz, or one line saying why the file is not the one expected.

Apart from formats.py so that a stage reading only labels (split) does not import OpenCV.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from dl4cv.data.waiting import raise_if_waiting
from dl4cv.runtime.errors import DatasetError

PROCESSED = "processed dataset"  # what the preprocess stage's .npz is called in messages


def read_npz(path: Path, fmt: str, keys: list[str]) -> dict[str, np.ndarray]:
    """The named arrays of an .npz, or one line saying why the file is not the expected one
    (an OSError, such as a missing file, is left to say so itself)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            raise_if_waiting(npz)  # a placeholder of a dataset that has no source yet
            missing = [key for key in keys if key not in npz.files]
            if not missing:
                return {key: npz[key] for key in keys}
    except (ValueError, TypeError, AttributeError):
        # Neither an .npz nor an .npy (NumPy's message then speaks of pickles), or one array.
        raise DatasetError(f"{path}: not a {fmt} file (not an .npz archive of arrays)") from None
    except (EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DatasetError(f"{path}: not a {fmt} file (a damaged .npz archive: {exc})") from None
    raise DatasetError(f"{path}: not a {fmt} file (no array {', '.join(missing)})")

"""preprocess: decode, resize and cache one dataset as arrays; list every rejected image."""

from __future__ import annotations

import logging
import sys

import numpy as np

from dl4cv.config import ImageSpec, Params
from dl4cv.data.formats import ProcessedDataset, read_raw, write_rejects
from dl4cv.data.sources import read_descriptor
from dl4cv.data.waiting import KEY, DataWaiting
from dl4cv.runtime.fileio import atomic_path
from dl4cv.runtime.paths import processed_file, raw_dir, rejects_file

log = logging.getLogger(__name__)


def run(dataset: str, params: Params) -> ProcessedDataset | None:
    """Write data/processed/<dataset>.npz and <dataset>-rejects.csv (placeholders, with no
    image, while the dataset waits for its data)."""
    spec = params.dataset(dataset)
    try:
        fetched = read_descriptor(raw_dir(dataset))
    except DataWaiting as waiting:
        _save_waiting(waiting, spec.image)
        write_rejects(rejects_file(dataset), [])
        waiting.warn(dataset)
        return None
    processed = read_raw(
        fetched, raw_dir(dataset), spec.image, params.preprocess, progress=sys.stderr.isatty()
    )
    processed.save(processed_file(dataset))
    write_rejects(rejects_file(dataset), processed.rejects)
    log.info(
        "%s: %d images %s in %d classes, %d rejected",
        dataset,
        len(processed.labels),
        processed.images.shape[1:],
        len(processed.classes),
        len(processed.rejects),
    )
    return processed


def _save_waiting(waiting: DataWaiting, image: ImageSpec) -> None:
    """The processed file's layout with no image, and the fix: loading it raises DataWaiting."""
    empty = np.array([], dtype=str)
    with atomic_path(processed_file(waiting.dataset), suffix=".npz") as tmp:
        np.savez(
            tmp,
            images=np.zeros((0, image.height, image.width, image.channels), np.uint8),
            labels=np.zeros(0, np.int64),
            classes=empty,
            ids=empty,
            origin=empty,
            dataset=np.array(waiting.dataset),
            **{KEY: np.array(waiting.fix)},
        )

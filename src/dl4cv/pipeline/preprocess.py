"""preprocess: decode, resize and cache one dataset as arrays; list every rejected image."""

from __future__ import annotations

import logging
import sys

from dl4cv.config import Params
from dl4cv.data.formats import ProcessedDataset, read_raw, write_rejects
from dl4cv.data.sources import read_descriptor
from dl4cv.paths import processed_file, raw_dir, rejects_file

log = logging.getLogger(__name__)


def run(dataset: str, params: Params) -> ProcessedDataset:
    """Write data/processed/<dataset>.npz and <dataset>-rejects.csv."""
    spec = params.dataset(dataset)
    fetched = read_descriptor(raw_dir(dataset))
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

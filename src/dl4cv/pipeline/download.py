"""download: obtain one dataset's file from its official source or a mirror, verified.

A dataset with no URL that no mirror lists (the book's Animals on a fresh clone) is not an
error: the stage writes a waiting `dataset.json` (no data file) and ends well, so the rest of
the pipeline runs (dl4cv.data.waiting).
"""

from __future__ import annotations

import logging

from dl4cv.config import Params
from dl4cv.data.sources import DESCRIPTOR, Fetched, NoSource, dataset_mirror, fetch
from dl4cv.data.waiting import DataWaiting, fix_for
from dl4cv.runtime.fileio import write_json
from dl4cv.runtime.paths import raw_dir

log = logging.getLogger(__name__)


def run(dataset: str, params: Params) -> Fetched | None:
    """Fetch a dataset into data/raw/<dataset>/ (from datasets.<dataset>.source.mirror or
    DL4CV_MIRROR when set); a dataset with no source yet waits (dataset.json says so)."""
    spec = params.dataset(dataset)
    try:
        fetched = fetch(spec, raw_dir(dataset), dataset_mirror(spec))
    except NoSource:
        waiting = DataWaiting(dataset, fix_for(dataset))
        write_json(raw_dir(dataset) / DESCRIPTOR, waiting.record())
        waiting.warn(dataset)
        return None
    log.info(
        "%s: %s from %s (%s), sha256 %s",
        dataset,
        fetched.file,
        fetched.origin,
        fetched.location,
        fetched.sha256,
    )
    return fetched

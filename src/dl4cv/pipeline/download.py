"""download: obtain one dataset's file from its official source or the mirror, verified."""

from __future__ import annotations

import logging

from dl4cv.config import Params
from dl4cv.data.sources import Fetched, fetch, mirror_from_env
from dl4cv.paths import raw_dir

log = logging.getLogger(__name__)


def run(dataset: str, params: Params) -> Fetched:
    """Fetch a dataset into data/raw/<dataset>/ (set DL4CV_MIRROR to use a local mirror)."""
    fetched = fetch(params.dataset(dataset), raw_dir(dataset), mirror_from_env())
    log.info(
        "%s: %s from %s (%s), sha256 %s",
        dataset,
        fetched.file,
        fetched.origin,
        fetched.location,
        fetched.sha256,
    )
    return fetched

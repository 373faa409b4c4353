"""split: the seeded train/test(/val) indices every experiment on a dataset shares."""

from __future__ import annotations

import logging

from dl4cv.config import Params
from dl4cv.data.npz import PROCESSED, read_npz
from dl4cv.data.splits import Split, make_split
from dl4cv.data.waiting import DataWaiting
from dl4cv.runtime.fileio import write_json
from dl4cv.runtime.paths import processed_file, split_file

log = logging.getLogger(__name__)


def run(dataset: str, params: Params) -> Split | None:
    """Write data/splits/<dataset>.json (a placeholder while the dataset waits for its data)."""
    spec = params.dataset(dataset)
    try:
        arrays = read_npz(processed_file(dataset), PROCESSED, ["labels", "origin", "classes"])
    except DataWaiting as waiting:
        write_json(split_file(dataset), waiting.record())
        waiting.warn(dataset)
        return None
    labels, origin, classes = (
        arrays["labels"],
        arrays["origin"].tolist(),
        arrays["classes"].tolist(),
    )
    split = make_split(labels, origin, spec.split, spec.subset)
    write_json(
        split_file(dataset), split.to_json(dataset, spec.split, spec.subset, labels, classes)
    )
    log.info(
        "%s: %s split, train %d / val %d / test %d",
        dataset,
        spec.split.method,
        len(split.train),
        len(split.val),
        len(split.test),
    )
    return split

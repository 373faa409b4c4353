"""Data that cannot be had yet makes its stages wait, not fail.

The book's Animals ship with the book and have no public URL: on a clone without them the
download stage writes a placeholder (`dataset.json` with a `waiting` field: what to run to
provide the data) and every stage downstream writes the outputs dvc.yaml declares for it as
small placeholders carrying the same text. So `dvc repro` still ends with exit 0, everything
else runs, each record and the book report say what waits and why, and providing the data
(a params change DVC sees) reruns exactly the stages that waited.

This module is the one place that tells a placeholder from data: the loaders of dataset.json,
the processed npz, the split json and the training's run.json call `raise_if_waiting`, and the
stages catch `DataWaiting` to write their own placeholders.
"""

from __future__ import annotations

import logging
from typing import Any

from dl4cv.runtime.errors import InputError
from dl4cv.runtime.paths import MIRROR

log = logging.getLogger(__name__)

STATUS = "waiting for data"  # the `status` of a waiting record (metrics.json and the others)
KEY = "waiting"  # the field that holds the fix, in JSON records and in the processed npz


class DataWaiting(InputError):
    """A stage's input is a placeholder: `dataset` has no source yet; `fix` says what to run.
    A stage that can wait catches it; to any other it is bad input (one line, exit 1)."""

    def __init__(self, dataset: str, fix: str) -> None:
        super().__init__(f"{dataset}: {STATUS}; to provide it: {fix}")
        self.dataset = dataset
        self.fix = fix

    def record(self, **fields: Any) -> dict[str, Any]:
        """A waiting stage's JSON output: its own fields, the dataset, the status and the fix."""
        return {**fields, "dataset": self.dataset, "status": STATUS, KEY: self.fix}

    def warn(self, what: str) -> None:
        """The one WARNING line a waiting stage logs."""
        log.warning(
            "%s: %s (%s has no source yet; /path/to/%s: the book's folder or zip); "
            "to provide it: %s",
            what,
            STATUS,
            self.dataset,
            self.dataset,
            self.fix,
        )


def fix_for(dataset: str) -> str:
    """The one line that provides a dataset without a URL: add it to the repository's mirror
    folder, then name that folder in params.yaml (a change DVC sees)."""
    return (
        f"python -m dl4cv.mirror add {dataset} /path/to/{dataset} && "
        f"dvc exp run -S datasets.{dataset}.source.mirror={MIRROR}"
    )


def raise_if_waiting(data: Any) -> None:
    """Raise `DataWaiting` if `data` (a JSON record or an open npz) is a waiting placeholder."""
    if KEY in data:
        raise DataWaiting(str(data["dataset"]), str(data[KEY]))

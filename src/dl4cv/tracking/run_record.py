"""The run record: every stage opens its MLflow run here, so every run carries the same tags,
the dataset it read as a run input, and the same artifact folders.

Standard tags: `dl4cv.experiment`, `dl4cv.stage`, `dl4cv.profile`, `dl4cv.seed`,
`dl4cv.source` = `pipeline` (what the report counts: runs from elsewhere, a benchmark script,
lack it or say otherwise), the git commit
(`git_commit` and MLflow's own `mlflow.source.git.commit`), `dataset`, `dataset.sha256`,
`dataset.origin` where the stage reads a dataset, and, under DVC, the variables it gives each
stage: `dvc.exp_name` and `dvc.baseline_rev` (set by `dvc exp run` only; the name
`dvc exp show` lists), `dvc.stage`. A run reopened by a later stage (evaluate, a resumed
training) keeps the tags of the stage that opened it and gains only the ones it lacks.

Artifact folders: `model` (the MLflow Model, logged by train), `checkpoints`, `data`, `monitor`
and `report` (what the stage wrote under reports/).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from dl4cv import tracking
from dl4cv.data.sources import DESCRIPTOR, Fetched, read_descriptor
from dl4cv.data.splits import Split
from dl4cv.runtime.fileio import read_json
from dl4cv.runtime.paths import raw_dir, split_file
from dl4cv.tracking.datasets import input_op

if TYPE_CHECKING:
    from dl4cv.config import Params

MODEL = "model"  # the MLflow Model's name: runs:/<run id>/model
CHECKPOINTS = "checkpoints"
DATA = "data"
MONITOR = "monitor"
REPORT = "report"
SOURCE_TAG = "dl4cv.source"
PIPELINE = "pipeline"

# What DVC puts in a stage's environment (dvc/env.py), and the tag each becomes.
ENV_TAGS = {  # environment variables recorded as tags when set
    "DVC_EXP_NAME": "dvc.exp_name",  # the DVC experiment the stage runs for
    "DVC_EXP_BASELINE_REV": "dvc.baseline_rev",
    "DVC_STAGE": "dvc.stage",
    "CUDA_VISIBLE_DEVICES": "cuda_visible_devices",  # the GPU a queue worker is pinned to
    "DL4CV_CLUSTER_TASK": "dl4cv.cluster_task",  # the cluster task (dl4cv.cluster.task)
}


@contextmanager
def record(
    stage: str,
    record_id: str,
    params: Params,
    *,
    dataset: str | None = None,
    run_id: str | None = None,
    record_key: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Iterator[tracking.Run]:
    """Open the MLflow run named `record_id` for `stage` (or reopen the run `run_id`, else the
    one made for `record_key`), with the standard tags and `tags`, and `dataset` (its raw file,
    split sizes) as the run's input."""
    fetched = _fetched(dataset) if dataset is not None else None
    standard = {
        "dl4cv.experiment": record_id,
        "dl4cv.stage": stage,
        "dl4cv.profile": params.profile,
        "dl4cv.seed": str(params.seed),
        SOURCE_TAG: PIPELINE,
        "git_commit": (commit := tracking.git_commit()),
        "mlflow.source.git.commit": commit,
        **{tag: os.environ[var] for var, tag in ENV_TAGS.items() if os.environ.get(var)},
    }
    if dataset is not None:
        standard["dataset"] = dataset
    if fetched is not None:
        standard |= {
            "dataset.sha256": fetched.sha256,
            "dataset.origin": fetched.origin,
        }
    with tracking.run(record_id, run_id=run_id, record=record_key) as active:
        tracking.set_tags(standard, missing_only=True)
        if tags:
            tracking.set_tags(dict(tags))
        if fetched is not None:
            tracking.log_input(
                input_op(
                    name=fetched.dataset,
                    location=fetched.location,
                    sha256=fetched.sha256,
                    origin=fetched.origin,
                    file=fetched.file,
                    splits=split_sizes(fetched.dataset),
                    context="training" if stage == "train" else "evaluation",
                )
            )
        yield active


def _fetched(dataset: str) -> Fetched | None:
    """What the download stage recorded of `dataset`; None for a stage run on processed data
    alone (the exercises' tests)."""
    folder = raw_dir(dataset)
    return read_descriptor(folder) if (folder / DESCRIPTOR).exists() else None


def split_sizes(dataset: str) -> dict[str, int]:
    """Images per split, from the split stage's file (empty before it ran)."""
    path = split_file(dataset)
    if not path.exists():
        return {}
    split = Split.from_json(read_json(path))
    return {"train": len(split.train), "val": len(split.val), "test": len(split.test)}


def register(exp_id: str) -> None:
    """Put the run's MLflow Model in the Model Registry as `exp_id` (a version once per run:
    a rerun of the stage that registers finds it)."""
    tracking.register_model(exp_id, MODEL)

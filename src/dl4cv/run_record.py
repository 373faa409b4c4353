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

import json
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dl4cv import tracking
from dl4cv.data.sources import DESCRIPTOR, Fetched, read_descriptor
from dl4cv.data.splits import Split
from dl4cv.fileio import read_json
from dl4cv.paths import raw_dir, split_file

if TYPE_CHECKING:
    from mlflow import ActiveRun

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
}
DIGEST_CHARS = 36  # the most MLflow stores of a dataset digest (MAX_DATASET_DIGEST_SIZE)


@contextmanager
def record(
    stage: str,
    record_id: str,
    params: Params,
    *,
    dataset: str | None = None,
    run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Iterator[ActiveRun]:
    """Open (or reopen `run_id`) the MLflow run named `record_id` for `stage`, with the standard
    tags and `tags`, and `dataset` (its raw file, split sizes) as the run's input."""
    import mlflow

    fetched = _fetched(dataset) if dataset is not None else None
    wanted = {
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
        wanted["dataset"] = dataset
    if fetched is not None:
        wanted |= {
            "dataset.sha256": fetched.sha256,
            "dataset.origin": fetched.origin,
        }
    with tracking.run(record_id, run_id=run_id) as active:
        reopened = active.info.run_id == run_id
        if reopened:
            present = mlflow.get_run(run_id).data.tags
            wanted = {k: v for k, v in wanted.items() if k not in present}
        tracking.set_tags(wanted | dict(tags or {}))
        if fetched is not None and not reopened:
            log_dataset(fetched, "training" if stage == "train" else "evaluation")
        yield active


def _fetched(dataset: str) -> Fetched | None:
    """What the download stage recorded of `dataset`; None for a stage run on processed data
    alone (the exercises' tests)."""
    folder = raw_dir(dataset)
    return read_descriptor(folder) if (folder / DESCRIPTOR).exists() else None


def log_dataset(fetched: Fetched, context: str) -> None:
    """The dataset as a run input (the UI's Dataset column): digest = the raw file's sha256
    (cut to the 36 characters MLflow keeps; the full one is the input's tag `sha256`), source =
    where it was fetched from, profile = the split sizes."""
    import mlflow

    dataset = _dataset(fetched)
    tags = {"sha256": fetched.sha256, "origin": fetched.origin, "file": fetched.file}
    mlflow.log_input(dataset, context=context, tags=tags)


def _dataset(fetched: Fetched) -> Any:
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    class SplitDataset(MetaDataset):
        """A dataset known by its file, split sizes as its profile."""

        def __init__(self, splits: dict[str, int], **kwargs: Any) -> None:
            self._splits = splits
            super().__init__(**kwargs)

        @property
        def profile(self) -> dict[str, int] | None:
            return self._splits or None

        def to_dict(self) -> dict[str, str]:  # what log_input stores: MetaDataset omits profile
            return super().to_dict() | (
                {"profile": json.dumps(self._splits)} if self._splits else {}
            )

    location = fetched.location
    if location.startswith(("http://", "https://")):
        source = HTTPDatasetSource(location)
    else:  # a mirror's file, the captcha generator: a local source (MLflow registers it twice
        with warnings.catch_warnings():  # and warns that it is ambiguous)
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(location)
    return SplitDataset(
        split_sizes(fetched.dataset),
        source=source,
        name=fetched.dataset,
        digest=fetched.sha256[:DIGEST_CHARS],
    )


def split_sizes(dataset: str) -> dict[str, int]:
    """Images per split, from the split stage's file (empty before it ran)."""
    path = split_file(dataset)
    if not path.exists():
        return {}
    split = Split.from_json(read_json(path))
    return {"train": len(split.train), "val": len(split.val), "test": len(split.test)}


def register(exp_id: str, run_id: str) -> int:
    """Put the run's MLflow Model in the Model Registry as `exp_id`; a version once per run
    (a rerun of the stage that registers finds it). Returns the version."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    found = client.search_model_versions(f"name = '{exp_id}' and run_id = '{run_id}'")
    if found:
        return int(found[0].version)
    version = mlflow.register_model(f"runs:/{run_id}/{MODEL}", exp_id)
    return int(version.version)

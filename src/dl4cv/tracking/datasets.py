"""The dataset a run read, as MLflow's run input (the UI's Dataset column).

digest = the raw file's sha256 (cut to the 36 characters MLflow keeps; the full one is the
input's tag `sha256`), source = where it was fetched from, profile = the split sizes.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

DIGEST_CHARS = 36  # the most MLflow stores of a dataset digest (MAX_DATASET_DIGEST_SIZE)
CONTEXT_TAG = "mlflow.data.context"  # what mlflow.log_input(context=...) sets


def input_op(
    *,
    name: str,
    location: str,
    sha256: str,
    origin: str,
    file: str,
    splits: dict[str, int],
    context: str,
) -> dict[str, Any]:
    """The journal operation that logs the dataset as an input of a new run."""
    return {
        "op": "input",
        "if_new": True,
        "name": name,
        "location": location,
        "sha256": sha256,
        "splits": splits,
        "tags": {"sha256": sha256, "origin": origin, "file": file, CONTEXT_TAG: context},
    }


def dataset_input(op: dict[str, Any]) -> Any:
    """The `mlflow.entities.DatasetInput` an input operation describes."""
    from mlflow.entities import DatasetInput, InputTag

    dataset = _dataset(op["name"], op["location"], op["sha256"], op["splits"])
    tags = [InputTag(k, v) for k, v in op["tags"].items()]
    return DatasetInput(dataset._to_mlflow_entity(), tags=tags)


def _dataset(name: str, location: str, sha256: str, splits: dict[str, int]) -> Any:
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

    if location.startswith(("http://", "https://")):
        source = HTTPDatasetSource(location)
    else:  # a mirror's file, the captcha generator: a local source (MLflow registers it twice
        with warnings.catch_warnings():  # and warns that it is ambiguous)
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(location)
    return SplitDataset(splits, source=source, name=name, digest=sha256[:DIGEST_CHARS])

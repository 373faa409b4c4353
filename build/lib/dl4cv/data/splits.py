"""Seeded train/test(/val) splits, saved as index lists shared by every experiment on a dataset.

`official` keeps the dataset's own split (CIFAR-10 50k/10k, MNIST 60k/10k); `stratified` and
`random` re-split everything with `train_test_split` and a seed (the book's MNIST split is all
70,000 images 75/25 with random_state 42). A `Subset` then caps each part with a stratified,
seeded subsample: that is how the quick profile stays small without changing any code path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from dl4cv.config import SplitSpec, Subset
from dl4cv.data.waiting import raise_if_waiting


@dataclass(frozen=True)
class Split:
    train: list[int]
    test: list[int]
    val: list[int]

    def to_json(
        self, dataset: str, spec: SplitSpec, subset: Subset, labels: np.ndarray, classes: list[str]
    ) -> dict:
        def counts(idx: list[int]) -> dict[str, int]:
            values, n = np.unique(labels[idx], return_counts=True)
            return {classes[v]: int(c) for v, c in zip(values, n, strict=True)}

        return {
            "dataset": dataset,
            "method": spec.method,
            "test_size": spec.test_size,
            "val_size": spec.val_size,
            "random_state": spec.random_state,
            "subset": {"max_train": subset.max_train, "max_test": subset.max_test},
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "class_counts": {
                "train": counts(self.train),
                "val": counts(self.val),
                "test": counts(self.test),
            },
            "train": self.train,
            "val": self.val,
            "test": self.test,
        }

    @classmethod
    def from_json(cls, data: dict) -> Split:
        raise_if_waiting(data)
        return cls(data["train"], data["test"], data["val"])


def make_split(
    labels: np.ndarray, origin: list[str], spec: SplitSpec, subset: Subset | None = None
) -> Split:
    subset = subset or Subset()
    labels = np.asarray(labels)
    everything = np.arange(len(labels))
    seed = spec.random_state
    if spec.method == "official":
        origin_arr = np.asarray(origin)
        if not {"train", "test"} <= set(origin_arr.tolist()):
            raise ValueError(
                "split method 'official' needs a dataset with its own train/test split; "
                "use 'stratified' or 'random' for this one"
            )
        train, test = everything[origin_arr == "train"], everything[origin_arr == "test"]
    else:
        train, test = _split(everything, labels, spec.test_size, seed, spec.method == "stratified")
    val = np.array([], dtype=int)
    if spec.val_size > 0:
        train, val = _split(train, labels, spec.val_size, seed, spec.method != "random")
    train = _cap(train, labels, subset.max_train, seed)
    test = _cap(test, labels, subset.max_test, seed)
    val = _cap(val, labels, subset.max_test, seed)
    return Split(sorted(train.tolist()), sorted(test.tolist()), sorted(val.tolist()))


def _split(
    idx: np.ndarray, labels: np.ndarray, size: float, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray]:
    first, second = train_test_split(
        idx, test_size=size, random_state=seed, stratify=labels[idx] if stratify else None
    )
    return np.asarray(first), np.asarray(second)


def _cap(idx: np.ndarray, labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or len(idx) <= limit:
        return idx
    _, counts = np.unique(labels[idx], return_counts=True)
    # scikit-learn stratifies only with >= 2 images per class and >= 1 kept and 1 dropped each
    feasible = min(limit, len(idx) - limit) >= len(counts) and counts.min() >= 2
    stratify = labels[idx] if feasible else None
    kept, _ = train_test_split(idx, train_size=limit, random_state=seed, stratify=stratify)
    return np.asarray(kept)

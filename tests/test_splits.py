"""Seeded train/test(/val) splits and subset caps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dl4cv.config import SplitSpec, Subset
from dl4cv.data.splits import Split, make_split


def imbalanced_labels(counts: tuple[int, ...] = (120, 60, 20), seed: int = 0) -> np.ndarray:
    """Shuffled labels with per-class `counts`, so order says nothing about class."""
    labels = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(labels)


def class_fraction(labels: np.ndarray, idx: list[int]) -> np.ndarray:
    return np.bincount(labels[idx], minlength=labels.max() + 1) / len(idx)


def assert_disjoint_cover(split: Split, n: int) -> None:
    train, val, test = set(split.train), set(split.val), set(split.test)
    assert not train & val and not train & test and not val & test
    assert train | val | test == set(range(n))
    assert len(split.train) == len(train)  # no index twice


@pytest.mark.parametrize("method", ["stratified", "random"])
def test_same_params_give_the_same_split(method: str):
    labels = imbalanced_labels()
    spec = SplitSpec(method, test_size=0.25, val_size=0.1, random_state=3)
    a = make_split(labels, [""] * len(labels), spec, Subset(50, 20))
    b = make_split(labels.copy(), [""] * len(labels), spec, Subset(50, 20))
    assert a == b
    assert a.train == sorted(a.train) and a.test == sorted(a.test) and a.val == sorted(a.val)


@pytest.mark.parametrize("method", ["stratified", "random"])
def test_another_random_state_gives_another_split(method: str):
    labels = imbalanced_labels()
    a = make_split(labels, [], SplitSpec(method, random_state=1))
    b = make_split(labels, [], SplitSpec(method, random_state=2))
    assert len(a.test) == len(b.test) == 50
    assert a.test != b.test
    assert_disjoint_cover(a, len(labels))
    assert_disjoint_cover(b, len(labels))


def test_test_size_sets_the_test_fraction():
    labels = imbalanced_labels()
    for test_size in (0.1, 0.25, 0.5):
        split = make_split(labels, [], SplitSpec("random", test_size=test_size))
        assert len(split.test) == int(np.ceil(test_size * len(labels)))
        assert len(split.train) == len(labels) - len(split.test)


def test_stratified_keeps_class_proportions():
    labels = imbalanced_labels((300, 150, 50))
    split = make_split(labels, [], SplitSpec("stratified", test_size=0.2, random_state=7))
    overall = class_fraction(labels, list(range(len(labels))))
    for part in (split.train, split.test):
        np.testing.assert_allclose(class_fraction(labels, part), overall, atol=0.01)
    # per class, the test set holds test_size of that class, to within one image
    test_counts = np.bincount(labels[split.test])
    np.testing.assert_allclose(test_counts, 0.2 * np.bincount(labels), atol=1)


def test_official_split_follows_the_origin():
    labels = imbalanced_labels((30, 30))
    origin = ["test" if i % 5 == 0 else "train" for i in range(len(labels))]
    spec = SplitSpec("official", random_state=1)
    split = make_split(labels, origin, spec)
    assert split.test == [i for i, o in enumerate(origin) if o == "test"]
    assert split.train == [i for i, o in enumerate(origin) if o == "train"]
    assert split.val == []
    # the seed does not move an official split
    assert make_split(labels, origin, SplitSpec("official", random_state=99)) == split


def test_official_split_with_val_carves_val_from_official_train_only():
    labels = imbalanced_labels((40, 40))
    origin = ["test" if i < 20 else "train" for i in range(len(labels))]
    split = make_split(labels, origin, SplitSpec("official", val_size=0.25))
    assert split.test == list(range(20))
    assert len(split.val) == 15 and len(split.train) == 45
    assert_disjoint_cover(split, len(labels))


def test_official_split_needs_an_origin():
    labels = imbalanced_labels((10, 10))
    with pytest.raises(ValueError, match="needs a dataset with its own train/test split"):
        make_split(labels, [""] * 20, SplitSpec("official"))
    with pytest.raises(ValueError, match="own train/test"):
        make_split(labels, ["train"] * 20, SplitSpec("official"))


@pytest.mark.parametrize("method", ["stratified", "random", "official"])
def test_val_is_carved_from_train_without_overlap(method: str):
    labels = imbalanced_labels((100, 60, 40))
    origin = ["test" if i % 4 == 0 else "train" for i in range(len(labels))]
    without = make_split(labels, origin, SplitSpec(method, test_size=0.25, random_state=5))
    spec = SplitSpec(method, test_size=0.25, val_size=0.2, random_state=5)
    split = make_split(labels, origin, spec)
    assert_disjoint_cover(split, len(labels))
    assert split.test == without.test  # val comes out of train, never out of test
    assert set(split.train) | set(split.val) == set(without.train)
    assert len(split.val) == int(np.ceil(0.2 * len(without.train)))


def test_stratified_val_keeps_class_proportions():
    labels = imbalanced_labels((300, 150, 50))
    split = make_split(labels, [], SplitSpec("stratified", test_size=0.2, val_size=0.2))
    overall = class_fraction(labels, list(range(len(labels))))
    np.testing.assert_allclose(class_fraction(labels, split.val), overall, atol=0.015)


def test_subset_caps_sizes_and_keeps_class_balance():
    labels = imbalanced_labels((600, 300, 100))
    spec = SplitSpec("stratified", test_size=0.25, val_size=0.1, random_state=11)
    full = make_split(labels, [], spec)
    assert (len(full.train), len(full.test), len(full.val)) == (675, 250, 75)
    capped = make_split(labels, [], spec, Subset(max_train=200, max_test=50))
    assert (len(capped.train), len(capped.test), len(capped.val)) == (200, 50, 50)
    assert set(capped.train) <= set(full.train)
    assert set(capped.test) <= set(full.test)
    assert set(capped.val) <= set(full.val)
    overall = class_fraction(labels, list(range(len(labels))))
    for part in (capped.train, capped.test, capped.val):
        np.testing.assert_allclose(class_fraction(labels, part), overall, atol=0.02)
    # caps above the sizes change nothing
    assert make_split(labels, [], spec, Subset(10**6, 10**6)) == full


def test_subset_smaller_than_the_class_count_still_caps():
    labels = imbalanced_labels((50, 50, 50, 50))
    split = make_split(labels, [], SplitSpec("stratified"), Subset(max_train=3, max_test=2))
    assert (len(split.train), len(split.test)) == (3, 2)


@pytest.mark.parametrize("drop", [1, 3, 9])
def test_subset_just_below_the_size_caps_exactly(drop: int):
    # stratified sampling needs at least one dropped image per class; with fewer the cap must
    # still hold rather than fail inside scikit-learn
    labels = imbalanced_labels((50, 50, 50, 50, 50, 50, 50, 50, 50, 50))
    full = make_split(labels, [], SplitSpec("stratified", test_size=0.2))
    cap = len(full.train) - drop
    split = make_split(labels, [], SplitSpec("stratified", test_size=0.2), Subset(max_train=cap))
    assert len(split.train) == cap
    assert set(split.train) <= set(full.train)
    assert split.test == full.test


def test_subset_with_a_singleton_class_caps_exactly():
    labels = np.array([0] * 60 + [1] * 39 + [2])  # class 2 has a single image
    split = make_split(labels, [], SplitSpec("random", test_size=0.2), Subset(max_train=30))
    assert len(split.train) == 30
    assert len(split.test) == 20


def test_split_json_round_trip_and_counts():
    labels = imbalanced_labels((40, 20))
    classes = ["cat", "dog"]
    spec = SplitSpec("stratified", test_size=0.25, val_size=0.2, random_state=4)
    subset = Subset(max_train=30, max_test=None)
    split = make_split(labels, [], spec, subset)
    data = json.loads(json.dumps(split.to_json("pets", spec, subset, labels, classes)))
    assert Split.from_json(data) == split
    assert data["sizes"] == {"train": 30, "val": len(split.val), "test": len(split.test)}
    for part in ("train", "val", "test"):
        idx = getattr(split, part)
        assert data["class_counts"][part] == {
            "cat": int((labels[idx] == 0).sum()),
            "dog": int((labels[idx] == 1).sum()),
        }
    assert data["dataset"] == "pets" and data["method"] == "stratified"
    assert data["subset"] == {"max_train": 30, "max_test": None}

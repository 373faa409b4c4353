"""params.yaml -> typed settings: the repo file parses, profiles merge, errors name their key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from dl4cv.config import (
    ConfigError,
    Dataset,
    Experiment,
    Params,
    Source,
    Subset,
    build,
    load_params,
    parse_params,
)
from tests.conftest import REPO


def repo_raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def minimal(profile: str = "book") -> dict:
    """A small valid params mapping, shaped like the repo's, that each test mutates."""
    return {
        "profile": profile,
        "seed": 7,
        "preprocess": {"interpolation": "area", "fast_decode": True, "workers": 0},
        "datasets": {
            "mnist": {
                "source": {"format": "keras-npz", "url": "http://x/mnist.npz", "sha256": "ab"},
                "image": {"width": 28, "height": 28, "channels": 1},
                "split": {"method": "random", "test_size": 0.25, "random_state": 42},
                "quick": {"subset": {"max_train": 30, "max_test": 10}},
            }
        },
        "experiments": {
            "lenet_mnist": {
                "chapter": 14,
                "dataset": "mnist",
                "model": {"name": "lenet"},
                "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9},
                "train": {"batch_size": 128, "epochs": 20},
                "quick": {"train": {"epochs": 3}, "optimizer": {"learning_rate": 0.1}},
            }
        },
    }


def set_key(raw: dict, dotted: str, value: Any) -> dict:
    node = raw
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return raw


def del_key(raw: dict, dotted: str) -> dict:
    node = raw
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    del node[last]
    return raw


def test_repo_params_file_parses_into_typed_settings():
    raw = repo_raw()
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.profile == raw["profile"]
    assert params.seed == raw["seed"]
    assert set(params.datasets) == set(raw["datasets"])
    assert set(params.experiments) == set(raw["experiments"])
    for name, dataset in params.datasets.items():
        assert isinstance(dataset, Dataset)
        assert dataset.name == name  # taken from the mapping key
        assert dataset.source.format == raw["datasets"][name]["source"]["format"]
        assert dataset.image.width == raw["datasets"][name]["image"]["width"]
    for exp_id, exp in params.experiments.items():
        assert isinstance(exp, Experiment)
        assert exp.id == exp_id
        assert exp.dataset in params.dataset_names()  # `captcha`: the captcha: section
        assert exp.model.name == raw["experiments"][exp_id]["model"]["name"]
        assert exp.is_keras == (exp.model.name != "knn")


@pytest.mark.parametrize("profile", ["book", "quick"])
def test_repo_params_parse_under_both_profiles(profile: str):
    raw = repo_raw()
    raw["profile"] = profile
    params = parse_params(raw)
    assert params.profile == profile
    for exp_id, exp in params.experiments.items():
        entry = raw["experiments"][exp_id]
        override = entry.get("quick", {}).get("train", {}).get("epochs")
        expected = entry.get("train", {}).get("epochs", 10)
        if profile == "quick" and override is not None:
            expected = override
        assert exp.train.epochs == expected, exp_id


def test_book_and_quick_profiles_differ_in_epochs_and_subset():
    raw = repo_raw()
    book = parse_params({**copy.deepcopy(raw), "profile": "book"})
    quick = parse_params({**copy.deepcopy(raw), "profile": "quick"})
    raw_exp = raw["experiments"]["lenet_mnist"]
    raw_ds = raw["datasets"]["mnist"]
    assert book.experiment("lenet_mnist").train.epochs == raw_exp["train"]["epochs"]
    assert quick.experiment("lenet_mnist").train.epochs == raw_exp["quick"]["train"]["epochs"]
    assert (
        book.experiment("lenet_mnist").train.epochs != quick.experiment("lenet_mnist").train.epochs
    )
    # deep merge: the quick block names only epochs; its sibling batch_size survives
    assert quick.experiment("lenet_mnist").train.batch_size == raw_exp["train"]["batch_size"]
    assert book.dataset("mnist").subset == Subset()
    assert quick.dataset("mnist").subset == Subset(**raw_ds["quick"]["subset"])
    # the rest of the dataset is untouched by the quick block
    assert quick.dataset("mnist").source == book.dataset("mnist").source
    assert quick.dataset("mnist").split == book.dataset("mnist").split


def test_quick_overrides_merge_deeply_without_losing_siblings():
    book = parse_params(minimal("book"))
    quick = parse_params(minimal("quick"))
    b_opt, q_opt = (
        book.experiment("lenet_mnist").optimizer,
        quick.experiment("lenet_mnist").optimizer,
    )
    assert (b_opt.learning_rate, q_opt.learning_rate) == (0.01, 0.1)
    assert b_opt.momentum == q_opt.momentum == 0.9  # not named by the override: kept
    assert q_opt.name == "sgd"
    assert book.experiment("lenet_mnist").train.epochs == 20
    assert quick.experiment("lenet_mnist").train.epochs == 3
    assert quick.experiment("lenet_mnist").train.batch_size == 128
    assert book.dataset("mnist").subset == Subset(None, None)
    assert quick.dataset("mnist").subset == Subset(30, 10)


def test_defaults_fill_optional_keys():
    raw = minimal()
    del raw["experiments"]["lenet_mnist"]["optimizer"]
    del raw["experiments"]["lenet_mnist"]["train"]
    exp = parse_params(raw).experiment("lenet_mnist")
    assert exp.optimizer.name == "sgd" and exp.optimizer.nesterov is False
    assert exp.train.epochs == 10 and exp.train.jit_compile == "auto"
    assert exp.evaluate.checkpoint == "final"


def test_ints_are_accepted_for_floats_and_stored_as_floats():
    raw = set_key(minimal(), "experiments.lenet_mnist.optimizer.learning_rate", 1)
    lr = parse_params(raw).experiment("lenet_mnist").optimizer.learning_rate
    assert lr == 1.0 and isinstance(lr, float)


@pytest.mark.parametrize(
    ("mutate", "path", "expected"),
    [
        (
            lambda r: set_key(r, "experiments.lenet_mnist.train.epochz", 5),
            "experiments.lenet_mnist.train.epochz",
            "unknown key; allowed keys here: ['batch_size', 'checkpoint', "
            "'checkpoint_interval_s', 'class_weight', 'dtype_policy', 'epochs'",
        ),
        (
            lambda r: set_key(r, "datasets.mnist.colour", "red"),
            "datasets.mnist.colour",
            "unknown key",
        ),
        (
            lambda r: del_key(r, "datasets.mnist.image.width"),
            "datasets.mnist.image.width",
            "missing required key",
        ),
        (
            lambda r: del_key(r, "experiments.lenet_mnist.model"),
            "experiments.lenet_mnist.model",
            "missing required key",
        ),
        (lambda r: del_key(r, "seed"), "seed", "missing required key"),
        (
            lambda r: set_key(r, "experiments.lenet_mnist.train.epochs", "ten"),
            "experiments.lenet_mnist.train.epochs",
            "expected an integer, got 'ten' (str)",
        ),
        (
            lambda r: set_key(r, "experiments.lenet_mnist.train.epochs", True),
            "experiments.lenet_mnist.train.epochs",
            "expected an integer, got True (bool)",
        ),
        (
            lambda r: set_key(r, "experiments.lenet_mnist.train.batch_size", 12.5),
            "experiments.lenet_mnist.train.batch_size",
            "expected an integer, got 12.5 (float)",
        ),
        (
            lambda r: set_key(r, "experiments.lenet_mnist.optimizer.learning_rate", "fast"),
            "experiments.lenet_mnist.optimizer.learning_rate",
            "expected a number, got 'fast' (str)",
        ),
        (
            lambda r: set_key(r, "experiments.lenet_mnist.optimizer.learning_rate", False),
            "experiments.lenet_mnist.optimizer.learning_rate",
            "expected a number, got False (bool)",
        ),
        (
            lambda r: set_key(r, "preprocess.fast_decode", "yes"),
            "preprocess.fast_decode",
            "expected true or false, got 'yes' (str)",
        ),
        (
            lambda r: set_key(r, "experiments.lenet_mnist.model.name", "resnet"),
            "experiments.lenet_mnist.model.name",
            "expected one of ['knn', 'shallownet', 'lenet', 'minivggnet', 'mlp'], got 'resnet'",
        ),
        (
            lambda r: set_key(r, "datasets.mnist.image.channels", 2),
            "datasets.mnist.image.channels",
            "expected one of [1, 3], got 2 (int)",
        ),
        (
            lambda r: set_key(r, "datasets.mnist.image.channels", True),
            "datasets.mnist.image.channels",
            "expected one of [1, 3], got True (bool)",
        ),
        (
            lambda r: set_key(r, "datasets.mnist.source.format", "hdf5"),
            "datasets.mnist.source.format",
            "expected one of ['keras-npz'",
        ),
        (
            lambda r: set_key(r, "profile", "fast"),
            "profile",
            "expected one of ['book', 'quick'], got 'fast'",
        ),
        (
            lambda r: set_key(r, "datasets.mnist.split.test_size", 1.5),
            "datasets.mnist.split.test_size",
            "expected a fraction in (0, 1), got 1.5",
        ),
        (
            lambda r: set_key(r, "datasets.mnist.split.test_size", 0),
            "datasets.mnist.split.test_size",
            "expected a fraction in (0, 1), got 0",
        ),
        (
            lambda r: set_key(r, "datasets.mnist.split.val_size", 1),
            "datasets.mnist.split.val_size",
            "expected a fraction in [0, 1), got 1",
        ),
        (
            lambda r: set_key(r, "experiments.lenet_mnist.train.epochs", 0),
            "experiments.lenet_mnist.train.epochs",
            "expected an integer >= 1, got 0",
        ),
        (
            lambda r: set_key(r, "datasets.mnist.subset", {"max_train": "all"}),
            "datasets.mnist.subset.max_train",
            "expected an integer or null, got 'all' (str)",
        ),
        (
            lambda r: set_key(r, "datasets.mnist.source.classes", {"a": 1}),
            "datasets.mnist.source.classes.a",
            "expected a string, got 1 (int)",
        ),
        (
            lambda r: set_key(r, "experiments.lenet_mnist.train", [1, 2]),
            "experiments.lenet_mnist.train",
            "expected a mapping, got [1, 2] (list)",
        ),
        (
            lambda r: set_key(r, "experiments.lenet_mnist.dataset", "mnsit"),
            "experiments.lenet_mnist.dataset",
            "'mnsit' is not one of the declared datasets ['mnist']",
        ),
        (
            lambda r: set_key(r, "experiments.lenet_mnist.quick", "epochs=3"),
            "experiments.lenet_mnist.quick",
            "expected a mapping of overrides",
        ),
        # numbers out of range: each names its key, the range and the value
        (
            lambda r: set_key(r, "experiments.lenet_mnist.optimizer.learning_rate", -0.01),
            "experiments.lenet_mnist.optimizer.learning_rate",
            "expected a number > 0, got -0.01",
        ),
        (
            lambda r: set_key(r, "experiments.lenet_mnist.optimizer.learning_rate", 0),
            "experiments.lenet_mnist.optimizer.learning_rate",
            "expected a number > 0, got 0.0",
        ),
        (
            lambda r: set_key(r, "experiments.lenet_mnist.optimizer.momentum", -0.9),
            "experiments.lenet_mnist.optimizer.momentum",
            "expected a number in [0, 1], got -0.9",
        ),
        (
            lambda r: set_key(r, "experiments.lenet_mnist.optimizer.decay", -0.01),
            "experiments.lenet_mnist.optimizer.decay",
            "expected a number >= 0, got -0.01",
        ),
        (
            lambda r: set_key(r, "experiments.lenet_mnist.model.n_neighbors", 0),
            "experiments.lenet_mnist.model.n_neighbors",
            "expected an integer >= 1, got 0",
        ),
        (
            lambda r: set_key(r, "experiments.lenet_mnist.model.hidden", [256, 0]),
            "experiments.lenet_mnist.model.hidden",
            "expected layer sizes >= 1, got [256, 0]",
        ),
        (
            lambda r: set_key(r, "experiments.lenet_mnist.chapter", -14),
            "experiments.lenet_mnist.chapter",
            "expected an integer >= 1, got -14",
        ),
        (lambda r: set_key(r, "seed", -1), "seed", "expected an integer in 0..4294967295, got -1"),
        (lambda r: set_key(r, "seed", 2**32), "seed", "in 0..4294967295, got 4294967296"),
        (
            lambda r: set_key(r, "datasets.mnist.split.random_state", -42),
            "datasets.mnist.split.random_state",
            "expected an integer in 0..4294967295, got -42",
        ),
        (
            lambda r: set_key(r, "datasets.mnist.image.width", 0),
            "datasets.mnist.image.width",
            "expected an integer in 1..4096, got 0",
        ),
        (
            lambda r: set_key(r, "datasets.mnist.image.height", 100000),
            "datasets.mnist.image.height",
            "expected an integer in 1..4096, got 100000 (a processed dataset is one in-memory "
            "array of N x height x width x channels bytes",
        ),
        (
            lambda r: set_key(r, "datasets.mnist.subset", {"max_train": 0}),
            "datasets.mnist.subset.max_train",
            "expected an integer >= 1 or null, got 0",
        ),
        (
            lambda r: set_key(r, "preprocess.workers", -2),
            "preprocess.workers",
            "expected an integer >= 0, got -2",
        ),
    ],
)
def test_invalid_params_fail_with_full_key_path(mutate, path: str, expected: str):
    raw = mutate(minimal())
    with pytest.raises(ConfigError) as info:
        parse_params(raw, source="params.yaml")
    message = str(info.value)
    assert f"{path}: " in message, message
    assert expected in message, message


def test_error_in_quick_override_is_reported_at_its_merged_key_path():
    raw = set_key(minimal("quick"), "experiments.lenet_mnist.quick.train.epochs", "three")
    with pytest.raises(ConfigError, match=r"experiments\.lenet_mnist\.train\.epochs: expected an"):
        parse_params(raw)


def test_repo_params_with_a_typo_fail_before_any_work():
    raw = repo_raw()
    raw["experiments"]["lenet_mnist"]["train"]["epochs"] = "ten"
    raw["profile"] = "book"
    with pytest.raises(ConfigError) as info:
        parse_params(raw, source="params.yaml")
    assert str(info.value).startswith("params.yaml: experiments.lenet_mnist.train.epochs: ")
    assert "expected an integer" in str(info.value)


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError, match="params.yaml: expected a mapping at the top level"):
        parse_params(["profile", "book"], source="params.yaml")


def test_load_params_reports_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "params.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: [book\nseed: 1\n")
    with pytest.raises(ConfigError) as info:
        load_params(bad)
    assert str(info.value) == (  # one line, where the stage prints it
        f"{bad}: not valid YAML: line 2, column 5: expected ',' or ']', but got ':'"
    )
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(minimal("quick")))
    assert load_params(good).experiment("lenet_mnist").train.epochs == 3


def test_a_bad_number_in_a_quick_block_fails_under_the_book_profile_too():
    raw = set_key(minimal("book"), "experiments.lenet_mnist.quick.optimizer.learning_rate", -1)
    with pytest.raises(ConfigError) as info:
        parse_params(raw, source="params.yaml")
    assert str(info.value) == (
        "params.yaml (with profile quick applied): experiments.lenet_mnist.optimizer."
        "learning_rate: expected a number > 0, got -1.0"
    )


def test_exercise_settings_numbers_are_bounded_too():
    raw = {
        **minimal(),
        "exercises": {
            "blobs": {
                "chapter": 9,
                "kind": "gradient_descent",
                "settings": {
                    "alpha": 0.01,
                    "epochs": 10,
                    "split": {"method": "random"},
                    "blobs": {"n_samples": 0},
                },
            }
        },
    }
    with pytest.raises(
        ConfigError, match=r"exercises\.blobs\.settings\.blobs\.n_samples: expected"
    ):
        parse_params(raw)


def test_duplicate_keys_are_refused_with_both_lines(tmp_path: Path):
    path = tmp_path / "params.yaml"
    text = yaml.safe_dump(minimal(), sort_keys=False)
    path.write_text(text + "seed: 8\n")  # PyYAML alone would keep 8 without a word
    first = text.splitlines().index("seed: 7") + 1
    last = len(text.splitlines()) + 1
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert str(info.value) == (
        f"{path}: line {last}: duplicate key 'seed' (first on line {first}); "
        "YAML would keep only the last value"
    )
    nested = "a:\n  b: {c: 1, c: 2}\n"  # also within one line, and at any depth
    path.write_text(nested)
    with pytest.raises(ConfigError, match=r"line 2: duplicate key 'c' \(first on line 2\)"):
        load_params(path)


def test_yaml_merge_keys_may_override_what_they_merge(tmp_path: Path):
    raw = minimal()
    text = yaml.safe_dump(raw, sort_keys=False).replace(
        "  lenet_mnist:\n", "  lenet_mnist: &base\n", 1
    )
    text += "  lenet_fast:\n    <<: *base\n    chapter: 15\n"
    path = tmp_path / "params.yaml"
    path.write_text(text)
    params = load_params(path)
    assert params.experiment("lenet_fast").chapter == 15


def test_lookup_of_undeclared_names_lists_the_declared_ones():
    params = parse_params(minimal())
    with pytest.raises(ConfigError, match=r"unknown dataset 'cifar'.*\['mnist'\]"):
        params.dataset("cifar")
    with pytest.raises(ConfigError, match=r"unknown experiment 'x'.*\['lenet_mnist'\]"):
        params.experiment("x")


def test_build_validates_outside_mappings_with_their_origin():
    source = build(Source, {"format": "keras-npz", "sha256": "00"}, "mirror.json")
    assert source == Source(format="keras-npz", sha256="00")
    with pytest.raises(ConfigError, match=r"^mirror\.json: format: expected one of"):
        build(Source, {"format": "tar"}, "mirror.json")

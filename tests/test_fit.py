"""fit_keras wiring for the ch 10 and ch 16 experiments: MLP networks and step decay."""

from __future__ import annotations

import dataclasses

import pytest

from dl4cv.config import ConfigError, ModelSpec, OptimizerSpec, parse_params
from dl4cv.runtime import backend
from dl4cv.training.fit import build_model, fit_keras, resolve
from dl4cv.training.state import TrainingState
from tests.conftest import toy_params
from tests.test_checkpoints import tiny_arrays, tiny_experiment


def test_step_decay_sets_each_epochs_learning_rate(tmp_path):
    exp = tiny_experiment(epochs=5)
    exp = dataclasses.replace(
        exp, optimizer=OptimizerSpec(learning_rate=0.01, step_factor=0.5, step_every=2)
    )
    state = TrainingState("f" * 64, 5)
    fit_keras(exp, tiny_arrays(), state, tmp_path, verbose=0)
    expected = [0.01 * 0.5 ** ((1 + epoch) // 2) for epoch in range(5)]
    assert state.history["lr"] == pytest.approx(expected, rel=1e-6)


def test_mlp_experiment_builds_the_declared_layers():
    model = build_model(ModelSpec(name="mlp", hidden=(32, 16), activation="relu"), (8, 8, 1), 3)
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert [layer.units for layer in dense] == [32, 16, 3]
    assert dense[0].activation.__name__ == "relu"
    assert model.output_shape == (None, 3)


def _params(optimizer: dict, model: dict | None = None) -> dict:
    model = model or {"name": "mlp", "hidden": [64, 32]}
    return toy_params(
        {"e": {"chapter": 10, "dataset": "toy", "model": model, "optimizer": optimizer}}
    )


def test_mlp_hidden_sizes_parse_as_a_tuple_and_are_checked():
    exp = parse_params(_params({"learning_rate": 0.01})).experiment("e")
    assert exp.model.hidden == (64, 32)
    with pytest.raises(
        ConfigError, match=r"experiments\.e\.model\.hidden\[1\]: expected an integer"
    ):
        parse_params(_params({}, {"name": "mlp", "hidden": [64, "wide"]}))
    with pytest.raises(ConfigError, match=r"experiments\.e\.model\.hidden: expected a list"):
        parse_params(_params({}, {"name": "mlp", "hidden": 64}))


@pytest.mark.parametrize(
    ("optimizer", "message"),
    [
        ({"decay": 0.001, "step_factor": 0.5}, "either decay"),
        ({"step_factor": 1.5}, "0 < step_factor <= 1"),
        ({"step_factor": 0.5, "step_every": 0}, "step_every >= 1"),
    ],
)
def test_step_decay_settings_are_validated(optimizer, message):
    with pytest.raises(ConfigError, match=rf"experiments\.e\.optimizer\.step_.*{message}"):
        parse_params(_params(optimizer))


def _with_train(exp, **train):
    return dataclasses.replace(exp, train=dataclasses.replace(exp.train, **train))


def test_auto_is_fit_in_float32_without_an_accelerator():
    """On this machine (no GPU), the default keeps the CPU results: model.fit, float32."""
    exp = tiny_experiment()
    assert (exp.train.runner, exp.train.dtype_policy) == ("auto", "auto")
    resolved = resolve(exp).train
    assert (resolved.runner, resolved.dtype_policy) == ("keras", "float32")


@pytest.mark.parametrize(
    ("model", "train", "expected"),
    [
        ("minivggnet", {}, ("scan", "mixed_bfloat16")),
        ("shallownet", {}, ("scan", "float32")),  # bf16 measured to gain it nothing
        ("minivggnet", {"runner": "keras"}, ("keras", "mixed_bfloat16")),
        ("minivggnet", {"dtype_policy": "float32"}, ("scan", "float32")),
        (
            "lenet",
            {"runner": "keras", "dtype_policy": "mixed_bfloat16"},
            ("keras", "mixed_bfloat16"),
        ),
    ],
)
def test_auto_on_an_accelerator_takes_the_fast_path(monkeypatch, model, train, expected):
    """No GPU exists here: `accelerated` stands in for JAX on one. Explicit values win."""
    monkeypatch.setattr(backend, "accelerated", lambda: True)
    exp = tiny_experiment()
    exp = dataclasses.replace(exp, model=dataclasses.replace(exp.model, name=model))
    resolved = resolve(_with_train(exp, **train)).train
    assert (resolved.runner, resolved.dtype_policy) == expected

"""The book's networks (ch 12, 14, 15) as built by dl4cv.nn.conv, and build_model's dispatch."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from dl4cv.config import ModelSpec
from dl4cv.nn.conv import LeNet, MiniVGGNet, ShallowNet
from dl4cv.training.fit import build_model


def of_type(model: keras.Model, kind: type) -> list:
    return [layer for layer in model.layers if isinstance(layer, kind)]


def predict(model: keras.Model, n: int = 5, seed: int = 0) -> np.ndarray:
    shape = model.input_shape[1:]
    x = np.random.default_rng(seed).random((n, *shape), dtype=np.float32)
    return keras.ops.convert_to_numpy(model(x, training=False))


BUILDERS = {
    "shallownet": lambda w, h, d, c: ShallowNet.build(w, h, d, c),
    "lenet": lambda w, h, d, c: LeNet.build(w, h, d, c),
    "minivggnet": lambda w, h, d, c: MiniVGGNet.build(w, h, d, c, batch_norm=True),
    "minivggnet_nobn": lambda w, h, d, c: MiniVGGNet.build(w, h, d, c, batch_norm=False),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize(("width", "height", "depth", "classes"), [(12, 8, 3, 3), (8, 8, 1, 10)])
def test_shapes_and_softmax(name, width, height, depth, classes):
    model = BUILDERS[name](width, height, depth, classes)
    # Keras takes images as (height, width, channels): a non-square input catches a swap.
    assert model.input_shape == (None, height, width, depth)
    assert model.output_shape == (None, classes)
    probs = predict(model)
    assert probs.shape == (5, classes)
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert isinstance(model.layers[-1], layers.Activation)
    assert model.layers[-1].get_config()["activation"] == "softmax"


def test_shallownet_is_one_conv_and_a_classifier():
    model = ShallowNet.build(32, 32, 3, 3)
    (conv,) = of_type(model, layers.Conv2D)
    assert conv.filters == 32
    assert conv.kernel_size == (3, 3)
    assert conv.padding == "same"
    (dense,) = of_type(model, layers.Dense)
    assert dense.units == 3
    # CONV(32, 3x3, same) -> FC(3): 3*3*3*32 + 32 = 896, then 32*32*32*3 + 3 = 98307.
    assert model.count_params() == 896 + 98307
    assert model.name == "shallownet"


def test_lenet_layers_match_the_book():
    model = LeNet.build(28, 28, 1, 10)
    convs = of_type(model, layers.Conv2D)
    assert [c.filters for c in convs] == [20, 50]
    assert [c.kernel_size for c in convs] == [(5, 5), (5, 5)]
    assert all(c.padding == "same" for c in convs)
    pools = of_type(model, layers.MaxPooling2D)
    assert [(p.pool_size, p.strides) for p in pools] == [((2, 2), (2, 2))] * 2
    assert [d.units for d in of_type(model, layers.Dense)] == [500, 10]
    relus = [a for a in of_type(model, layers.Activation) if a.get_config()["activation"] == "relu"]
    assert len(relus) == 3
    # Two 2x2 pools: 28 -> 14 -> 7, so the flattened volume is 7 * 7 * 50.
    (flatten,) = of_type(model, layers.Flatten)
    assert flatten.output.shape[1:] == (7 * 7 * 50,)


@pytest.mark.parametrize(
    ("batch_norm", "n_bn", "name"), [(True, 5, "minivggnet"), (False, 0, "minivggnet_nobn")]
)
def test_minivggnet_layers_match_the_book(batch_norm, n_bn, name):
    model = MiniVGGNet.build(32, 32, 3, 10, batch_norm=batch_norm)
    convs = of_type(model, layers.Conv2D)
    assert [c.filters for c in convs] == [32, 32, 64, 64]
    assert all(c.kernel_size == (3, 3) and c.padding == "same" for c in convs)
    assert len(of_type(model, layers.BatchNormalization)) == n_bn
    assert len(of_type(model, layers.MaxPooling2D)) == 2
    assert [d.rate for d in of_type(model, layers.Dropout)] == [0.25, 0.25, 0.5]
    assert [d.units for d in of_type(model, layers.Dense)] == [512, 10]
    assert model.name == name
    # Two pools: 32 -> 16 -> 8, 64 channels.
    (flatten,) = of_type(model, layers.Flatten)
    assert flatten.output.shape[1:] == (8 * 8 * 64,)


def test_minivggnet_bn_follows_each_relu():
    model = MiniVGGNet.build(16, 16, 3, 4, batch_norm=True)
    kinds = [type(layer).__name__ for layer in model.layers]
    for i, kind in enumerate(kinds):
        if kind == "BatchNormalization":
            assert kinds[i - 1] == "Activation"
            assert model.layers[i - 1].get_config()["activation"] == "relu"


def test_dropout_is_active_only_in_training():
    model = MiniVGGNet.build(8, 8, 1, 3, batch_norm=False)
    x = np.random.default_rng(1).random((4, 8, 8, 1), dtype=np.float32)
    a = keras.ops.convert_to_numpy(model(x, training=False))
    b = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_array_equal(a, b)
    trained = keras.ops.convert_to_numpy(model(x, training=True))
    assert not np.allclose(a, trained)


@pytest.mark.parametrize(
    ("spec", "name", "n_conv"),
    [
        (ModelSpec("shallownet"), "shallownet", 1),
        (ModelSpec("lenet"), "lenet", 2),
        (ModelSpec("minivggnet"), "minivggnet", 4),
        (ModelSpec("minivggnet", batch_norm=False), "minivggnet_nobn", 4),
    ],
)
def test_build_model_dispatch(spec, name, n_conv):
    model = build_model(spec, (8, 12, 1), 4)  # shape is (height, width, depth)
    assert model.name == name
    assert model.input_shape == (None, 8, 12, 1)
    assert model.output_shape == (None, 4)
    assert len(of_type(model, layers.Conv2D)) == n_conv


def test_build_model_shallownet_ignores_batch_norm_flag():
    a = build_model(ModelSpec("shallownet", batch_norm=True), (8, 8, 3), 2)
    b = build_model(ModelSpec("shallownet", batch_norm=False), (8, 8, 3), 2)
    assert a.count_params() == b.count_params()
    assert not of_type(a, layers.BatchNormalization)


def test_build_model_refuses_knn():
    with pytest.raises(ValueError, match="knn"):
        build_model(ModelSpec("knn"), (8, 8, 3), 3)

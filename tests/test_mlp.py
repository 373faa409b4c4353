"""Ch 10 Keras MLPs: mlp_mnist 784-256-128-10 sigmoid, mlp_cifar10 3072-1024-512-10 ReLU."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from dl4cv.nn.mlp import CIFAR10, MLP, MNIST


def dense_params(sizes: list[int]) -> int:
    """Weights plus biases of fully connected layers sizes[0] -> sizes[1] -> ..."""
    return sum((a + 1) * b for a, b in zip(sizes, sizes[1:], strict=False))


@pytest.mark.parametrize(
    ("input_shape", "preset", "sizes", "activation"),
    [
        ((28, 28, 1), MNIST, [784, 256, 128, 10], "sigmoid"),
        ((32, 32, 3), CIFAR10, [3072, 1024, 512, 10], "relu"),
    ],
)
def test_book_mlps(input_shape, preset, sizes, activation):
    model = MLP.build(input_shape, 10, **preset)
    assert model.input_shape == (None, *input_shape)
    assert model.output_shape == (None, 10)
    assert isinstance(model.layers[0], layers.Flatten)
    dense = [layer for layer in model.layers if isinstance(layer, layers.Dense)]
    assert [layer.units for layer in dense] == sizes[1:]
    assert [layer.activation.__name__ for layer in dense] == [activation] * 2 + ["softmax"]
    assert dense[0].kernel.shape == (sizes[0], sizes[1])
    assert model.count_params() == dense_params(sizes)


def test_param_counts_hand_computed():
    # 785*256 + 257*128 + 129*10 and 3073*1024 + 1025*512 + 513*10
    assert MLP.build(784, 10, **MNIST).count_params() == 235_146
    assert MLP.build(3072, 10, **CIFAR10).count_params() == 3_676_682


def test_images_and_flat_vectors_give_the_same_outputs():
    keras.utils.set_random_seed(0)
    images = MLP.build((8, 8, 1), 3, hidden=(5,), activation="sigmoid")
    flat = MLP.build(64, 3, hidden=(5,), activation="sigmoid")
    flat.set_weights(images.get_weights())
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    a = keras.ops.convert_to_numpy(images(x))
    b = keras.ops.convert_to_numpy(flat(x.reshape(4, 64)))
    np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (((0,), 10), "input shape"),
        ((784, 1), "classes"),
        ((784, 10, (256, 0)), "hidden"),
    ],
)
def test_bad_shapes_are_refused(args, match):
    with pytest.raises(ValueError, match=match):
        MLP.build(*args)

"""Keras multi-layer perceptrons of ch 10: fully connected layers on flattened pixels.

mlp_mnist is 784-256-128-10 with sigmoid hidden layers, mlp_cifar10 3072-1024-512-10 with ReLU;
both end in softmax. The network starts with a Flatten, so it takes the image arrays the data
stages produce (28x28x1, 32x32x3) as well as already flat vectors: no reshaping in the stages.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

MNIST = {"hidden": (256, 128), "activation": "sigmoid"}
CIFAR10 = {"hidden": (1024, 512), "activation": "relu"}


class MLP:
    @staticmethod
    def build(
        input_shape: int | Sequence[int],
        classes: int,
        hidden: Sequence[int] = (256, 128),
        activation: str = "sigmoid",
        name: str = "mlp",
    ) -> keras.Model:
        """`input_shape`: an int for flat vectors, or an image shape (height, width, depth)."""
        shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
        if not shape or any(int(d) < 1 for d in shape):
            raise ValueError(f"MLP: input shape must be positive, got {input_shape!r}")
        if classes < 2:
            raise ValueError(f"MLP: need at least 2 classes for softmax, got {classes}")
        if any(int(units) < 1 for units in hidden):
            raise ValueError(f"MLP: hidden layer sizes must be positive, got {tuple(hidden)}")
        return keras.Sequential(
            [
                keras.Input(shape),
                layers.Flatten(),
                *(layers.Dense(int(units), activation=activation) for units in hidden),
                layers.Dense(classes, activation="softmax"),
            ],
            name=name,
        )

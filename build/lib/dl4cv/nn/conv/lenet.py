"""LeNet (ch 14): two CONV => RELU => POOL blocks, FC 500, softmax."""

from __future__ import annotations

import keras
from keras import layers


class LeNet:
    @staticmethod
    def build(width: int, height: int, depth: int, classes: int) -> keras.Model:
        return keras.Sequential(
            [
                keras.Input((height, width, depth)),
                layers.Conv2D(20, (5, 5), padding="same"),
                layers.Activation("relu"),
                layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2)),
                layers.Conv2D(50, (5, 5), padding="same"),
                layers.Activation("relu"),
                layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2)),
                layers.Flatten(),
                layers.Dense(500),
                layers.Activation("relu"),
                layers.Dense(classes),
                layers.Activation("softmax"),
            ],
            name="lenet",
        )

"""ShallowNet (ch 12): one CONV => RELU block, then a softmax classifier."""

from __future__ import annotations

import keras
from keras import layers


class ShallowNet:
    @staticmethod
    def build(width: int, height: int, depth: int, classes: int) -> keras.Model:
        return keras.Sequential(
            [
                keras.Input((height, width, depth)),
                layers.Conv2D(32, (3, 3), padding="same"),
                layers.Activation("relu"),
                layers.Flatten(),
                layers.Dense(classes),
                layers.Activation("softmax"),
            ],
            name="shallownet",
        )

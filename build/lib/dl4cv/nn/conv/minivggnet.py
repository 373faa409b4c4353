"""MiniVGGNet (ch 15): two (CONV => RELU => BN) x2 => POOL => DROPOUT blocks, FC 512, softmax.

`batch_norm=False` gives the book's comparison network without batch normalization.
"""

from __future__ import annotations

import keras
from keras import layers


def _conv_block(filters: int, batch_norm: bool) -> list[layers.Layer]:
    block: list[layers.Layer] = []
    for _ in range(2):
        block += [layers.Conv2D(filters, (3, 3), padding="same"), layers.Activation("relu")]
        if batch_norm:
            block.append(layers.BatchNormalization(axis=-1))
    return block + [layers.MaxPooling2D(pool_size=(2, 2)), layers.Dropout(0.25)]


class MiniVGGNet:
    @staticmethod
    def build(
        width: int, height: int, depth: int, classes: int, batch_norm: bool = True
    ) -> keras.Model:
        head: list[layers.Layer] = [layers.Flatten(), layers.Dense(512), layers.Activation("relu")]
        if batch_norm:
            head.append(layers.BatchNormalization())
        head += [layers.Dropout(0.5), layers.Dense(classes), layers.Activation("softmax")]
        return keras.Sequential(
            [keras.Input((height, width, depth))]
            + _conv_block(32, batch_norm)
            + _conv_block(64, batch_norm)
            + head,
            name="minivggnet" if batch_norm else "minivggnet_nobn",
        )

"""Build the optimizer an experiment declares."""

from __future__ import annotations

import keras

from dl4cv.config import OptimizerSpec
from dl4cv.training.schedules import time_based_decay


def build_optimizer(spec: OptimizerSpec) -> keras.optimizers.Optimizer:
    learning_rate = time_based_decay(spec.learning_rate, spec.decay)
    if spec.name == "sgd":
        return keras.optimizers.SGD(
            learning_rate=learning_rate, momentum=spec.momentum, nesterov=spec.nesterov
        )
    return keras.optimizers.Adam(learning_rate=learning_rate)


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))

"""Learning-rate schedules, including the book's Keras 2 `SGD(decay=...)` with today's API.

Keras 2 applied lr_t = lr0 / (1 + decay * t), t counted in optimizer steps (batches).
Keras 3 has no `decay` argument; InverseTimeDecay with decay_steps=1 is the same formula.
"""

from __future__ import annotations

import keras


def time_based_decay(
    learning_rate: float, decay: float
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    if decay == 0:
        return learning_rate
    return keras.optimizers.schedules.InverseTimeDecay(
        initial_learning_rate=learning_rate, decay_steps=1, decay_rate=decay
    )

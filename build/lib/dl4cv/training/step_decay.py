"""The book's ch 16 step decay: the learning rate drops by a constant factor every few epochs.

lr(epoch) = lr0 * factor ** floor((1 + epoch) / drop_every), epoch 0-based as Keras counts it.
The `1 +` makes the first drop land on the epoch index `drop_every - 1` (the 5th epoch for
drop_every 5), not one epoch later; tests pin that off-by-one with hand-computed values.

The rate depends only on the epoch index, never on the rate the optimizer currently holds, so a
training resumed with `initial_epoch=k` gets the same rates as an uninterrupted one.
Unlike `schedules.time_based_decay` (per optimizer step, a Keras schedule object), this changes
the rate between epochs through `keras.callbacks.LearningRateScheduler`, which needs the
optimizer's learning rate to be a plain float, not a schedule.
"""

from __future__ import annotations

from collections.abc import Callable

import keras


def step_decay(epoch: int, initial_lr: float, factor: float, drop_every: int) -> float:
    """The rate for 0-based `epoch`: `initial_lr * factor ** ((1 + epoch) // drop_every)`."""
    _check(initial_lr, factor, drop_every)
    if epoch < 0:
        raise ValueError(f"step_decay: epoch must be >= 0, got {epoch}")
    return float(initial_lr * factor ** ((1 + int(epoch)) // drop_every))


def step_decay_schedule(
    initial_lr: float, factor: float, drop_every: int
) -> Callable[[int, float], float]:
    """A `(epoch, lr) -> lr` function for `keras.callbacks.LearningRateScheduler`.

    The current `lr` is ignored on purpose (see the module docstring: resume-safe).
    """
    _check(initial_lr, factor, drop_every)

    def schedule(epoch: int, lr: float | None = None) -> float:
        return step_decay(epoch, initial_lr, factor, drop_every)

    return schedule


def step_decay_callback(
    initial_lr: float, factor: float, drop_every: int
) -> keras.callbacks.LearningRateScheduler:
    """The ready callback; Keras sets the rate before each epoch and logs it as `learning_rate`."""
    return keras.callbacks.LearningRateScheduler(
        step_decay_schedule(initial_lr, factor, drop_every)
    )


def learning_rates(
    schedule: Callable[[int, float], float], epochs: int, initial_lr: float
) -> list[float]:
    """The rate of each of `epochs` epochs, as the scheduler would set them (for plots)."""
    rates: list[float] = []
    lr = initial_lr
    for epoch in range(epochs):
        lr = float(schedule(epoch, lr))
        rates.append(lr)
    return rates


def _check(initial_lr: float, factor: float, drop_every: int) -> None:
    if not initial_lr > 0:
        raise ValueError(f"step_decay: initial_lr must be > 0, got {initial_lr}")
    if not 0 < factor <= 1:
        raise ValueError(f"step_decay: factor must be in (0, 1], got {factor}")
    if isinstance(drop_every, bool) or not isinstance(drop_every, int) or drop_every < 1:
        raise ValueError(f"step_decay: drop_every must be an integer >= 1, got {drop_every!r}")

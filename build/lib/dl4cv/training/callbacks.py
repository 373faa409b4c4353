"""Small Keras callbacks that feed the epoch logs: learning rate, epoch time, MLflow."""

from __future__ import annotations

import numbers
import time

import keras

from dl4cv import tracking
from dl4cv.training.optimizers import current_learning_rate


class EpochStats(keras.callbacks.Callback):
    """Add the learning rate and the epoch's wall time to the logs other callbacks see."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["lr"] = current_learning_rate(self.model.optimizer)
            logs["epoch_seconds"] = time.perf_counter() - self._start


class MLflowMetrics(keras.callbacks.Callback):
    """Log every epoch's metrics (and the learning rate) to the active run, step = epoch."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        numeric = {k: v for k, v in (logs or {}).items() if isinstance(v, numbers.Real)}
        tracking.log_metrics(numeric, step=epoch + 1)

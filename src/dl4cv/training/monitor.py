"""The book's ch 17 TrainingMonitor: history JSON and curves PNG rewritten after every epoch.

A reader can watch a long run (and stop it when it overfits) without waiting for the end.
Both files are replaced atomically, so a viewer or a kill never sees half a file. The PNG is
redrawn at most once per `plot_interval_s` (and after the last epoch): drawing it costs about
0.1 s, a third of a MiniVGGNet epoch on a GPU, and nobody watches faster than that.

Resume (the book's `startAt`): a training restarted from the checkpoint of epoch `start_at`
passes `start_at` and `initial_epoch=start_at` to `fit`. The monitor then loads the JSON the
first run wrote and keeps its first `start_at` epochs: epochs the first run finished after its
last checkpoint are dropped, because the resumed run trains them again.
"""

from __future__ import annotations

import json
import numbers
import time
from collections.abc import Callable
from pathlib import Path

import keras

from dl4cv.evaluation import plot_curves
from dl4cv.runtime.fileio import write_json

History = dict[str, list[float]]


class TrainingMonitor(keras.callbacks.Callback):
    """After every epoch write `json_path` (`{metric: [value per epoch]}`) and `fig_path` (at
    most once per `plot_interval_s`, timed by `clock`, and always at the end of training)."""

    def __init__(
        self,
        fig_path: Path | str,
        json_path: Path | str,
        start_at: int = 0,
        title: str = "",
        plot_interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if start_at < 0:
            raise ValueError(f"TrainingMonitor: start_at must be >= 0, got {start_at}")
        self.fig_path = Path(fig_path)
        self.json_path = Path(json_path)
        self.start_at = start_at
        self.title = title or f"training monitor: {self.json_path.stem}"
        # A fresh training (start_at 0) starts fresh files; an old JSON is not history of it.
        self.history: History = load_history(self.json_path, start_at) if start_at else {}
        self.plot_interval_s = plot_interval_s
        self.clock = clock
        self._plotted: float | None = None  # when the PNG was last drawn
        self._stale = False  # epochs finished since

    @property
    def epochs(self) -> int:
        return len(self.history.get("loss", []))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        # Checked before the epoch's work: a wrong start_at/initial_epoch pair would misnumber
        # every later epoch of the files.
        if epoch != self.epochs:
            raise ValueError(
                f"TrainingMonitor: fit starts epoch {epoch} but {self.json_path} holds "
                f"{self.epochs} epochs; pass start_at equal to fit's initial_epoch"
            )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for key, value in (logs or {}).items():
            if isinstance(value, numbers.Real) or _is_scalar(value):
                self.history.setdefault(key, []).append(float(value))
        write_json(self.json_path, self.history)
        self._stale = True
        if self._plotted is None or self.clock() - self._plotted >= self.plot_interval_s:
            self._plot()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._stale:
            self._plot()

    def _plot(self) -> None:
        plot_curves(self.fig_path, self.history, self.title)
        self._plotted = self.clock()
        self._stale = False


def load_history(path: Path, start_at: int) -> History:
    """The first `start_at` epochs of the history at `path`, with errors that name the file."""
    if not path.exists():
        raise FileNotFoundError(
            f"TrainingMonitor: resuming at epoch {start_at} needs the history {path}, "
            "which does not exist"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"TrainingMonitor: the history {path} is not valid JSON ({error}); "
            "delete it and restart the training from epoch 0, or restore it"
        ) from error
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(x, numbers.Real) for x in v)
        for k, v in data.items()
    ):
        raise ValueError(
            f"TrainingMonitor: the history {path} is not a {{metric: [numbers]}} object"
        )
    epochs = len(data.get("loss", []))
    if epochs < start_at:
        raise ValueError(
            f"TrainingMonitor: resuming at epoch {start_at} but the history {path} holds only "
            f"{epochs} epochs"
        )
    return {key: [float(x) for x in values[:start_at]] for key, values in data.items()}


def _is_scalar(value: object) -> bool:
    """A 0-d array or tensor (backends may log those) that converts to one float."""
    shape = getattr(value, "shape", None)
    return shape is not None and tuple(shape) == () and hasattr(value, "__float__")

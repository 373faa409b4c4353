"""The test split as `train` scored it, saved beside the model for `evaluate`.

Train has the model in memory (and Keras imported) anyway; saving its test-set outputs lets
evaluate score them without loading Keras, which costs seconds per process. NumPy only here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dl4cv.runtime.fileio import atomic_path

PREDICTIONS_FILE = "predictions.npz"  # in models/<exp>/model/
PREDICT_BATCH = 1024  # images per model.predict batch: a test set is scored in few steps


@dataclass
class Predictions:
    """True labels, class names, and the outputs of the final model and, for a network that
    kept one, of its best checkpoint: softmax probabilities (N, classes) as float32 for a
    network, predicted labels (N,) for k-NN, which has no probabilities worth keeping."""

    y_true: np.ndarray
    classes: list[str]
    final: np.ndarray
    best: np.ndarray | None = None

    def predicted(self, checkpoint: str = "final") -> np.ndarray:
        """The predicted label of each test image by `checkpoint` ('final' or 'best')."""
        outputs = self.best if checkpoint == "best" else self.final
        if outputs is None:
            raise ValueError(f"no outputs of the {checkpoint} model were saved")
        return outputs.argmax(axis=1) if outputs.ndim == 2 else outputs

    def save(self, path: Path) -> None:
        arrays = {"y_true": self.y_true, "classes": np.array(self.classes), "final": self.final}
        if self.best is not None:
            arrays["best"] = self.best
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)

    @classmethod
    def load(cls, path: Path) -> Predictions:
        if not path.exists():
            raise FileNotFoundError(f"{path}: missing; run the train stage first (dvc repro)")
        with np.load(path, allow_pickle=False) as npz:
            return cls(
                npz["y_true"],
                npz["classes"].tolist(),
                npz["final"],
                npz["best"] if "best" in npz.files else None,
            )

"""Ch 22: find faces with OpenCV's Haar cascade, then label each face with a trained classifier.

The classifier (LeNet on 28x28 gray SMILES crops) sees each face box cut out of the gray frame
and resized as the training images were; its softmax gives the label and its probability.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from dl4cv.config import Cascade
from dl4cv.preprocessing import SimplePreprocessor

SMILING = "smiling"  # the class drawn in green; every other label in red
GREEN, RED = (0, 200, 0), (0, 0, 230)


class Classifier(Protocol):
    """What labels the faces: a Keras model (or anything with its input shape and predict)."""

    input_shape: tuple

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Face:
    x: int
    y: int
    w: int
    h: int
    label: str
    probability: float  # the classifier's probability of `label`

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2


class FaceDetector:
    """OpenCV's Haar cascade (shipped in cv2.data.haarcascades) with detectMultiScale's
    arguments from params.yaml (the book's: scaleFactor 1.1, minNeighbors 5, minSize 30x30)."""

    def __init__(self, spec: Cascade) -> None:
        path = Path(cv2.data.haarcascades) / spec.file
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise FileNotFoundError(
                f"{path}: no Haar cascade OpenCV can load (detect.cascade.file: a file name "
                f"under {cv2.data.haarcascades})"
            )
        self.spec = spec

    def detect(self, gray: np.ndarray) -> np.ndarray:
        """Face boxes (x, y, w, h) of a gray frame, shape (N, 4), left to right."""
        boxes = self.cascade.detectMultiScale(
            gray,
            scaleFactor=self.spec.scale_factor,
            minNeighbors=self.spec.min_neighbors,
            minSize=tuple(self.spec.min_size),
        )
        boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        return boxes[np.lexsort((boxes[:, 1], boxes[:, 0]))]


class SmileDetector:
    """The faces of a frame, each labelled by `model` (trained on images of `classes`)."""

    def __init__(
        self,
        faces: FaceDetector,
        model: Classifier,
        classes: list[str],
        interpolation: str = "area",
    ) -> None:
        _, height, width, depth = model.input_shape
        if depth not in (1, 3):
            raise ValueError(f"model input has {depth} channels; expected 1 (gray) or 3 (BGR)")
        self.faces, self.model, self.classes, self.depth = faces, model, classes, depth
        self.resize = SimplePreprocessor(width, height, interpolation)

    def __call__(self, frame: np.ndarray) -> list[Face]:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        boxes = self.faces.detect(gray)
        if not len(boxes):
            return []
        source = gray if self.depth == 1 else _to_bgr(frame)
        rois = [self.resize.preprocess(source[y : y + h, x : x + w]) for x, y, w, h in boxes]
        batch = np.stack(rois).reshape(len(rois), *self.model.input_shape[1:])
        probs = np.asarray(self.model.predict_on_batch(batch.astype(np.float32) / 255.0))
        if probs.shape != (len(rois), len(self.classes)):
            raise ValueError(
                f"model gives {probs.shape[1:]} outputs per face; expected {len(self.classes)} "
                f"(one per class of {self.classes})"
            )
        best = probs.argmax(axis=1)
        return [
            Face(int(x), int(y), int(w), int(h), self.classes[k], float(probs[i, k]))
            for i, ((x, y, w, h), k) in enumerate(zip(boxes, best, strict=True))
        ]


def display_name(label: str) -> str:
    """`not_smiling` -> `Not smiling`: how the book writes the label on the frame."""
    return label.replace("_", " ").capitalize()


def annotate(frame: np.ndarray, faces: list[Face]) -> np.ndarray:
    """A copy of `frame` (BGR) with each face's box, label and probability drawn on it."""
    out = _to_bgr(frame).copy()
    for face in faces:
        color = GREEN if face.label == SMILING else RED
        cv2.rectangle(out, (face.x, face.y), (face.x + face.w, face.y + face.h), color, 2)
        text = f"{display_name(face.label)}: {face.probability:.2f}"
        cv2.putText(
            out,
            text,
            (face.x, max(face.y - 8, 12)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            color,
            1,
            cv2.LINE_AA,
        )
    return out


def _to_bgr(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame

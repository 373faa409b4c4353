"""predict: the book's ch 13 — reload a trained model in a stage of its own and label images.

The model is read back from `models/<experiment>/model/model.keras`, so this proves the saved
file alone is enough to predict. Sample test images are drawn with a seed, shown at their
original size where the raw archive has them (the network saw them at 32x32), and labelled
with the prediction, its probability and the true class.
"""

from __future__ import annotations

import csv
import io
import logging
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np

from dl4cv import tracking
from dl4cv.config import Params
from dl4cv.data.formats import ProcessedDataset
from dl4cv.data.sources import read_descriptor
from dl4cv.data.splits import Split
from dl4cv.data.waiting import DataWaiting
from dl4cv.pipeline.train import FINAL_KERAS
from dl4cv.runtime import backend
from dl4cv.runtime.fileio import atomic_path, read_json, write_json, write_text
from dl4cv.runtime.paths import model_dir, processed_file, raw_dir, report_dir, split_file
from dl4cv.tracking import run_record
from dl4cv.training.inputs import scale_pixels

log = logging.getLogger(__name__)

TILE = 256  # pixels of the longer side of each shown image
COLUMNS = 5


def run(pred_id: str, params: Params) -> dict:
    """Write reports/experiments/<id>/: predictions.png (a labelled grid), predictions.csv,
    metrics.json; log them to an MLflow run named by the id (placeholders that say so, and no
    run, while the dataset waits for its data)."""
    started = time.perf_counter()
    pred = params.predictions[pred_id]
    exp = params.experiment(pred.experiment)
    try:
        processed = ProcessedDataset.load(processed_file(exp.dataset))
        split = Split.from_json(read_json(split_file(exp.dataset)))
    except DataWaiting as waiting:
        return _wait(pred_id, pred.chapter, params.profile, waiting)
    keras = backend.load_keras()  # after the data: a waiting stage never pays for it

    model_file = model_dir(exp.id) / FINAL_KERAS
    if not model_file.exists():
        raise FileNotFoundError(f"{model_file}: missing; train {exp.id} first (dvc repro)")
    model = keras.models.load_model(model_file)

    rng = np.random.default_rng(pred.seed)
    test = np.asarray(split.test)
    picked = rng.choice(test, size=min(pred.samples, len(test)), replace=False)
    probs = model.predict(scale_pixels(processed.images[picked]), verbose=0)
    predicted = probs.argmax(axis=1)
    originals = _originals(exp.dataset, [processed.ids[i] for i in picked])

    tiles, rows = [], []
    for k, index in enumerate(picked):
        truth = processed.classes[int(processed.labels[index])]
        label = processed.classes[int(predicted[k])]
        image = originals[k] if originals[k] is not None else processed.images[index]
        tiles.append(_labelled(image, label, float(probs[k].max()), truth))
        rows.append([processed.ids[index], truth, label, f"{float(probs[k].max()):.4f}"])

    out = report_dir(pred_id)
    with atomic_path(out / "predictions.png", suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), _grid(tiles)):
            raise OSError(f"{out / 'predictions.png'}: OpenCV could not write the grid")
    _write_csv(out / "predictions.csv", rows)

    correct = int(sum(r[1] == r[2] for r in rows))
    with run_record.record(
        "predict", pred_id, params, dataset=exp.dataset, tags={"model_experiment": exp.id}
    ) as active:
        tracking.log_params(
            {"experiment": exp.id, "samples": len(rows), "seed": pred.seed, "model": model_file}
        )
        metrics = {
            "experiment": pred_id,
            "chapter": pred.chapter,
            "profile": params.profile,
            "model_experiment": exp.id,
            "samples": len(rows),
            "correct": correct,
            "sample_accuracy": correct / len(rows),
            "originals_shown": sum(o is not None for o in originals),
            "mlflow_run_id": active.run_id,
            "wall_seconds": time.perf_counter() - started,
        }
        write_json(out / "metrics.json", metrics)
        tracking.log_metrics({"sample_accuracy": metrics["sample_accuracy"]})
        for name in ("predictions.png", "predictions.csv", "metrics.json"):
            tracking.log_artifact(out / name, run_record.REPORT)
    log.info("%s: %d of %d sample predictions right (%s)", pred_id, correct, len(rows), model_file)
    return metrics


def _wait(pred_id: str, chapter: int, profile: str, waiting: DataWaiting) -> dict:
    """The declared outputs of a prediction whose dataset waits: each says what to provide."""
    from dl4cv.evaluation import plot_message

    out = report_dir(pred_id)
    plot_message(
        out / "predictions.png", f"{waiting.dataset}: waiting for data", f"{pred_id} (ch {chapter})"
    )
    _write_csv(out / "predictions.csv", [])
    metrics = waiting.record(experiment=pred_id, chapter=chapter, profile=profile)
    write_json(out / "metrics.json", metrics)
    waiting.warn(pred_id)
    return metrics


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer).writerows([["id", "true", "predicted", "probability"], *rows])
    write_text(path, buffer.getvalue())


def _originals(dataset: str, ids: list[str]) -> list[np.ndarray | None]:
    """The images as the raw archive holds them (class-folder zips), else None each."""
    fetched = read_descriptor(raw_dir(dataset))
    path = raw_dir(dataset) / fetched.file
    if not zipfile.is_zipfile(path):
        return [None] * len(ids)
    found: list[np.ndarray | None] = []
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        for name in ids:
            data = archive.read(name) if name in names else b""
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
            found.append(image)
    return found


def _labelled(image: np.ndarray, label: str, probability: float, truth: str) -> np.ndarray:
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    h, w = image.shape[:2]
    scale = TILE / max(h, w)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
    image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=interpolation)
    tile = np.full((TILE + 40, TILE, 3), 255, np.uint8)
    tile[: image.shape[0], : image.shape[1]] = image
    colour = (0, 140, 0) if label == truth else (0, 0, 210)
    cv2.putText(
        tile,
        f"Label: {label} {probability:.0%}",
        (4, TILE + 16),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.5,
        colour,
        1,
        cv2.LINE_AA,
    )
    cv2.putText(
        tile,
        f"true: {truth}",
        (4, TILE + 34),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.45,
        (60, 60, 60),
        1,
        cv2.LINE_AA,
    )
    return tile


def _grid(tiles: list[np.ndarray]) -> np.ndarray:
    blank = np.full_like(tiles[0], 255)
    rows = [
        np.hstack((tiles[i : i + COLUMNS] + [blank] * COLUMNS)[:COLUMNS])
        for i in range(0, len(tiles), COLUMNS)
    ]
    return np.vstack(rows) if len(tiles) > COLUMNS else rows[0][:, : len(tiles) * TILE]

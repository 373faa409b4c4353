"""evaluate: score an experiment's model on its test split; write and log the report."""

from __future__ import annotations

import logging

import joblib
import numpy as np

from dl4cv import evaluation, tracking
from dl4cv.config import Params
from dl4cv.data.formats import ProcessedDataset
from dl4cv.data.splits import Split
from dl4cv.fileio import read_json, write_json, write_text
from dl4cv.paths import model_dir, processed_file, report_dir, split_file
from dl4cv.pipeline.train import FINAL_KERAS, FINAL_KNN, HISTORY_FILE, RUN_FILE
from dl4cv.training.inputs import scale_pixels
from dl4cv.training.state import BEST_FILE

log = logging.getLogger(__name__)

PREDICT_BATCH = 1024


def run(exp_id: str, params: Params) -> dict:
    """Write reports/<experiment>/: metrics.json, report.txt, confusion_matrix.png, curves.png,
    history.csv; log them to the experiment's MLflow run."""
    exp = params.experiment(exp_id)
    processed = ProcessedDataset.load(processed_file(exp.dataset))
    split = Split.from_json(read_json(split_file(exp.dataset)))
    trained = model_dir(exp_id)
    info = read_json(trained / RUN_FILE)
    history = read_json(trained / HISTORY_FILE)

    x_test = processed.images[split.test]
    y_test = processed.labels[split.test]
    if exp.is_keras:
        import keras

        name = BEST_FILE if exp.evaluate.checkpoint == "best" else FINAL_KERAS
        model = keras.models.load_model(trained / name)
        probs = model.predict(scale_pixels(x_test), batch_size=PREDICT_BATCH, verbose=0)
        y_pred = probs.argmax(axis=1)
    else:
        model = joblib.load(trained / FINAL_KNN)
        y_pred = model.predict(x_test.reshape(len(x_test), -1))

    out = report_dir(exp_id)
    title = f"{exp_id} (ch {exp.chapter})"
    metrics = evaluation.classification_metrics(y_test, y_pred, processed.classes)
    epochs = info["epochs"]
    seconds = history.get("epoch_seconds", [])
    metrics.update(
        {
            "experiment": exp_id,
            "chapter": exp.chapter,
            "profile": params.profile,
            "backend": info["backend"],
            "epochs": epochs,
            "train_seconds": info["train_seconds"],
            # The first epoch also compiles: reported apart, left out of the steady-state mean.
            "first_epoch_seconds": seconds[0] if seconds else None,
            "seconds_per_epoch": float(np.mean(seconds[1:] or seconds)) if seconds else None,
            "checkpoint": exp.evaluate.checkpoint if exp.is_keras else "final",
            "mlflow_run_id": info["run_id"],
        }
    )
    for key in ("val_accuracy", "val_loss"):
        if history.get(key):
            metrics[f"final_{key}"] = history[key][-1]
    if history.get("val_loss"):  # the ch 18 figures: the best epoch and its loss
        best = int(np.argmin(history["val_loss"]))
        metrics["best_val_loss"] = history["val_loss"][best]
        metrics["best_val_loss_epoch"] = best + 1
        if history.get("val_accuracy"):
            metrics["best_val_loss_accuracy"] = history["val_accuracy"][best]
    if exp.is_keras and exp.train.checkpoint == "improvements":
        metrics["improvement_checkpoints"] = len(list((trained / "improvements").glob("*.h5")))
    write_json(out / "metrics.json", metrics)
    write_text(out / "report.txt", evaluation.report_text(y_test, y_pred, processed.classes))
    evaluation.plot_confusion_matrix(
        out / "confusion_matrix.png", y_test, y_pred, processed.classes, title
    )
    evaluation.plot_curves(out / "curves.png", history, title)
    evaluation.plot_learning_rates(  # ch 16: the schedule, epoch by epoch
        out / "learning_rate.png", {exp_id: history["lr"]} if history.get("lr") else {}, title
    )
    evaluation.history_csv(out / "history.csv", history)

    with tracking.run(exp_id, run_id=info["run_id"]):
        tracking.log_metrics(
            {
                f"test_{k}": v
                for k, v in metrics.items()
                if k
                in (
                    "accuracy",
                    "precision_weighted",
                    "recall_weighted",
                    "f1_weighted",
                    "precision_macro",
                    "f1_macro",
                )
            }
        )
        for name in (
            "metrics.json",
            "report.txt",
            "confusion_matrix.png",
            "curves.png",
            "learning_rate.png",
            "history.csv",
        ):
            tracking.log_artifact(out / name, "report")
    log.info(
        "%s: accuracy %.4f, weighted precision %.4f on %d test images",
        exp_id,
        metrics["accuracy"],
        metrics["precision_weighted"],
        metrics["support"],
    )
    return metrics

"""evaluate: score an experiment's test-set predictions; write and log the report.

Train saved the predictions beside the model: this stage reads only models/<exp>/model/ and
never loads Keras (seconds per process), so rewriting a report is quick.
"""

from __future__ import annotations

import logging

import numpy as np

from dl4cv import evaluation, tracking
from dl4cv.config import ConfigError, Params
from dl4cv.data.waiting import DataWaiting, raise_if_waiting
from dl4cv.runtime.fileio import read_json, write_json, write_text
from dl4cv.runtime.paths import HISTORY_FILE, RUN_FILE, model_dir, report_dir
from dl4cv.tracking import run_record
from dl4cv.training.predictions import PREDICTIONS_FILE, Predictions

log = logging.getLogger(__name__)


def run(exp_id: str, params: Params) -> dict:
    """Write reports/<experiment>/: metrics.json, report.txt, confusion_matrix.png, curves.png,
    history.csv; log them to the experiment's MLflow run and register its model when
    `mlflow.register` lists it (placeholders that say so, and no run, while the training waits
    for its data)."""
    exp = params.experiment(exp_id)
    trained = model_dir(exp_id)
    info = read_json(trained / RUN_FILE)
    try:
        raise_if_waiting(info)
    except DataWaiting as waiting:
        return _wait(exp_id, exp.chapter, params.profile, waiting)
    history = read_json(trained / HISTORY_FILE)
    predictions = Predictions.load(trained / PREDICTIONS_FILE)
    checkpoint = exp.evaluate.checkpoint if exp.is_keras else "final"
    if checkpoint == "best" and predictions.best is None:
        raise ConfigError(
            f"experiments.{exp_id}.evaluate.checkpoint: 'best', but the training kept no best "
            f"checkpoint ({trained / PREDICTIONS_FILE} has none); use 'final'"
        )
    y_test = predictions.y_true
    y_pred = predictions.predicted(checkpoint)
    classes = predictions.classes

    out = report_dir(exp_id)
    title = f"{exp_id} (ch {exp.chapter})"
    metrics = evaluation.classification_metrics(y_test, y_pred, classes)
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
            "checkpoint": checkpoint,
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
    write_text(out / "report.txt", evaluation.report_text(y_test, y_pred, classes))
    evaluation.plot_confusion_matrix(out / "confusion_matrix.png", y_test, y_pred, classes, title)
    evaluation.plot_curves(out / "curves.png", history, title)
    evaluation.plot_learning_rates(  # ch 16: the schedule, epoch by epoch
        out / "learning_rate.png", {exp_id: history["lr"]} if history.get("lr") else {}, title
    )
    evaluation.history_csv(out / "history.csv", history)

    with run_record.record(
        "evaluate", exp_id, params, run_id=info["run_id"], record_key=info.get("record")
    ):
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
            tracking.log_artifact(out / name, run_record.REPORT)
        if exp_id in params.mlflow.register:
            run_record.register(exp_id)
    log.info(
        "%s: accuracy %.4f, weighted precision %.4f on %d test images",
        exp_id,
        metrics["accuracy"],
        metrics["precision_weighted"],
        metrics["support"],
    )
    return metrics


def _wait(exp_id: str, chapter: int, profile: str, waiting: DataWaiting) -> dict:
    """Every declared output of a waiting experiment, each saying what to run to provide it."""
    out = report_dir(exp_id)
    title = f"{exp_id} (ch {chapter})"
    metrics = waiting.record(experiment=exp_id, chapter=chapter, profile=profile)
    write_json(out / "metrics.json", metrics)
    write_text(out / "report.txt", f"{title}: {waiting}\n")
    for name in ("confusion_matrix.png", "curves.png", "learning_rate.png"):
        evaluation.plot_message(out / name, f"{waiting.dataset}: waiting for data", title)
    evaluation.history_csv(out / "history.csv", {})
    waiting.warn(exp_id)
    return metrics

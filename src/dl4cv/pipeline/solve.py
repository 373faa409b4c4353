"""solve: read whole new captchas with the trained digit classifier (ch 21's last step).

The captchas are drawn by the generator with `captcha.solve.seed`, never used for training,
so their texts are known: the record holds captcha-level accuracy (all digits right; a
captcha that does not split into digits counts as wrong) and digit-level scores.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import cv2
import numpy as np

from dl4cv import evaluation, tracking
from dl4cv.captcha import settings
from dl4cv.captcha.generator import CaptchaGenerator
from dl4cv.captcha.solve import CaptchaSolver, Solution, draw_grid
from dl4cv.config import CAPTCHA, Params
from dl4cv.data.formats import ProcessedDataset
from dl4cv.pipeline.train import FINAL_KERAS, RUN_FILE
from dl4cv.runtime import backend
from dl4cv.runtime.fileio import atomic_path, read_json, write_json, write_text
from dl4cv.runtime.paths import model_dir, processed_file, report_dir
from dl4cv.tracking import run_record
from dl4cv.training.predictions import PREDICT_BATCH
from dl4cv.training.state import BEST_FILE

log = logging.getLogger(__name__)

RECORD = "captcha_solve"
CHAPTER = 21
GRID_FILE = "solve_grid.png"


def run(params: Params) -> dict:
    """Write reports/experiments/captcha_solve/: metrics.json, report.txt, solve_grid.png;
    log them as the MLflow run `captcha_solve`."""
    keras = backend.load_keras()

    spec = settings(params)
    solve = spec.solve
    exp = params.experiment(solve.experiment)
    trained = model_dir(exp.id)
    model = keras.models.load_model(
        trained / (BEST_FILE if exp.evaluate.checkpoint == "best" else FINAL_KERAS)
    )
    classes = ProcessedDataset.load(processed_file(CAPTCHA)).classes
    backend.seed_everything(params.seed)

    started = time.perf_counter()
    generator = CaptchaGenerator(solve.seed, spec.segment.digits)
    drawn = [generator.render(i) for i in range(solve.count)]
    solver = CaptchaSolver(
        lambda x: model.predict(x, batch_size=PREDICT_BATCH, verbose=0),
        classes,
        spec.segment,
        spec.image,
        params.preprocess.interpolation,
    )
    solutions = solver.solve([c.image for c in drawn])
    solve_seconds = time.perf_counter() - started

    truths = [c.text for c in drawn]
    segmented = [(t, s.text) for t, s in zip(truths, solutions, strict=True) if s.text]
    y_true = [classes.index(ch) if ch in classes else -1 for t, _ in segmented for ch in t]
    y_pred = [classes.index(ch) for _, p in segmented for ch in p]
    digits = evaluation.classification_metrics(np.array(y_true), np.array(y_pred), classes)
    metrics = {
        "experiment": RECORD,
        "chapter": CHAPTER,
        "profile": params.profile,
        "model_experiment": exp.id,
        "captchas": solve.count,
        "segmented": len(segmented),
        "segmentation_failures": solve.count - len(segmented),
        "captcha_accuracy": sum(t == p for t, p in segmented) / solve.count,
        "digit_accuracy": digits["accuracy"],
        "digit_precision_weighted": digits["precision_weighted"],
        "digit_support": digits["support"],
        "per_class": digits["per_class"],
        "seconds_per_captcha": solve_seconds / solve.count,
    }
    out = report_dir(RECORD)
    report = _report(metrics, truths, solutions, y_true, y_pred, classes)
    grid = draw_grid(
        [c.image for c in drawn[: solve.grid]], truths[: solve.grid], solutions[: solve.grid]
    )

    model_run = read_json(trained / RUN_FILE)["run_id"]
    with run_record.record(
        "solve",
        RECORD,
        params,
        dataset=CAPTCHA,
        tags={
            "keras_backend": backend.name(),
            "model_experiment": exp.id,
            "model_run_id": model_run,
        },
    ) as active:
        metrics["mlflow_run_id"] = active.run_id
        metrics["wall_seconds"] = time.perf_counter() - started
        tracking.log_params(
            tracking.flatten("solve", dataclasses.asdict(solve))
            | tracking.flatten("segment", dataclasses.asdict(spec.segment))
            | {"profile": params.profile}
        )
        tracking.log_metrics(
            {
                k: metrics[k]
                for k in (
                    "captcha_accuracy",
                    "digit_accuracy",
                    "digit_precision_weighted",
                    "segmentation_failures",
                    "seconds_per_captcha",
                    "wall_seconds",
                )
            }
        )
        write_json(out / "metrics.json", metrics)
        write_text(out / "report.txt", report)
        with atomic_path(out / GRID_FILE, suffix=".png") as tmp:
            if not cv2.imwrite(str(tmp), grid):
                raise OSError(f"could not write {out / GRID_FILE}")
        for name in ("metrics.json", "report.txt", GRID_FILE):
            tracking.log_artifact(out / name, run_record.REPORT)
    log.info(
        "%d captchas: %.4f solved (all %d digits right), digit accuracy %.4f, %d did not split; "
        "%.1f ms per captcha",
        solve.count,
        metrics["captcha_accuracy"],
        spec.segment.digits,
        metrics["digit_accuracy"],
        metrics["segmentation_failures"],
        1000 * metrics["seconds_per_captcha"],
    )
    return metrics


def _report(
    metrics: dict,
    truths: list[str],
    solutions: list[Solution],
    y_true: list[int],
    y_pred: list[int],
    classes: list[str],
) -> str:
    lines = [
        f"captcha_solve (ch {CHAPTER}): {metrics['captchas']} new captchas read with the model "
        f"of {metrics['model_experiment']}",
        f"captcha accuracy (all digits right): {metrics['captcha_accuracy']:.4f}",
        f"digit accuracy: {metrics['digit_accuracy']:.4f} on {metrics['digit_support']} digits "
        f"of {metrics['segmented']} segmented captchas; "
        f"{metrics['segmentation_failures']} did not split into digits",
        "",
        "digits:",
        evaluation.report_text(np.array(y_true), np.array(y_pred), classes),
        "misread captchas (index: truth -> read):",
    ]
    wrong = [
        f"  {i}: {t} -> {s.text or 'not split: ' + s.error}"
        for i, (t, s) in enumerate(zip(truths, solutions, strict=True))
        if s.text != t
    ]
    return "\n".join(lines + (wrong or ["  none"])) + "\n"

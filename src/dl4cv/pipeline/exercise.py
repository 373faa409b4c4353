"""exercise: one of the book's from-scratch examples (ch 8-11, 19), recorded like an experiment.

Every exercise, whatever its kind, leaves the same record: reports/experiments/<id>/metrics.json
(the common keys plus the runner's numbers), report.txt, and plots/ (figures, and history.csv
where it trains for epochs), all also in one MLflow run named by the id.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dl4cv import tracking
from dl4cv.config import Exercise, Params
from dl4cv.data.waiting import DataWaiting, raise_if_waiting
from dl4cv.exercises import Outcome
from dl4cv.exercises.convolutions import convolutions
from dl4cv.exercises.descent import gradient_descent, regularization
from dl4cv.exercises.diagram import visualize
from dl4cv.exercises.networks import neural_network, perceptron
from dl4cv.exercises.scoring import linear_scoring, losses_worked
from dl4cv.runtime.fileio import write_json, write_text
from dl4cv.runtime.paths import processed_file, report_dir
from dl4cv.tracking import run_record

log = logging.getLogger(__name__)

Runner = Callable[[Exercise, Params, Path], Outcome]
RUNNERS: dict[str, Runner] = {
    "linear_scoring": linear_scoring,
    "losses_worked": losses_worked,
    "gradient_descent": gradient_descent,
    "regularization": regularization,
    "perceptron": perceptron,
    "neural_network": neural_network,
    "convolutions": convolutions,
    "visualize": visualize,
}
PLOTS = "plots"
HISTORY_FILE = "history.csv"
# Per-epoch series longer than this are logged to MLflow every k-th epoch (and the last);
# history.csv keeps every epoch. nn_xor's 20,000 epochs would otherwise cost seconds to log.
MAX_LOGGED_STEPS = 1000


def run_group(exercise_ids: list[str], params: Params) -> list[dict]:
    """Run several exercises in one process (each is seconds of work after a few seconds of
    imports); every id is checked before the first one runs."""
    for exercise_id in exercise_ids:
        params.exercise(exercise_id)
    _jax_on_cpu()
    return [run(exercise_id, params) for exercise_id in exercise_ids]


def _jax_on_cpu() -> None:
    """The exercises are the book's CPU code: where they use JAX (the from-scratch network's
    compiled epochs, Keras on JAX) it stays on the CPU, without a GPU's start-up seconds and
    the share of its memory JAX takes (queue workers may be sharing that GPU)."""
    os.environ["JAX_PLATFORMS"] = "cpu"
    if "jax" in sys.modules:  # imported (a warm start preloads Keras), its backends not started
        sys.modules["jax"].config.update("jax_platforms", "cpu")


def run(exercise_id: str, params: Params) -> dict:
    """Write reports/experiments/<exercise>/: metrics.json, report.txt and plots/; log them to
    an MLflow run named by the exercise (a record that says so, and no run, while its dataset
    waits for its data)."""
    exercise = params.exercise(exercise_id)
    out = report_dir(exercise_id)
    figures = out / PLOTS
    shutil.rmtree(figures, ignore_errors=True)  # no figure of an earlier setting lingers on
    figures.mkdir(parents=True)
    try:
        _check_data(exercise)
    except DataWaiting as waiting:
        metrics = waiting.record(
            experiment=exercise_id, chapter=exercise.chapter, profile=params.profile
        )
        write_text(out / "report.txt", f"{exercise_id} (ch {exercise.chapter}): {waiting}\n")
        write_json(out / "metrics.json", metrics)
        waiting.warn(exercise_id)
        return metrics

    with run_record.record(
        "exercise",
        exercise_id,
        params,
        dataset=exercise.dataset,
        tags={"dl4cv.kind": exercise.kind},
    ) as active:
        tracking.log_params(
            tracking.flatten("settings", exercise.settings)
            | {
                "kind": exercise.kind,
                "chapter": exercise.chapter,
                "dataset": exercise.dataset,
                "seed": params.seed,
                "profile": params.profile,
            }
        )

        started = time.perf_counter()
        outcome = RUNNERS[exercise.kind](exercise, params, figures)
        wall_seconds = time.perf_counter() - started

        metrics = {
            "experiment": exercise_id,
            "chapter": exercise.chapter,
            "profile": params.profile,
            "mlflow_run_id": active.run_id,
            "wall_seconds": wall_seconds,
            **outcome.metrics,
        }
        if outcome.history:
            _write_history(figures / HISTORY_FILE, outcome.history)
            epochs = max(len(values) for values in outcome.history.values())
            tracking.log_metric_history(outcome.history, logged_steps(epochs))
        tracking.set_tags(outcome.tags)
        tracking.log_metrics(
            {
                k: v
                for k, v in tracking.flatten("", outcome.metrics).items()
                if isinstance(v, int | float)
            }
            | {"wall_seconds": wall_seconds}
        )
        header = f"{exercise_id} (ch {exercise.chapter}, {exercise.kind}), profile {params.profile}"
        write_text(out / "report.txt", f"{header}\n\n{outcome.report}")
        write_json(out / "metrics.json", metrics)
        tracking.log_artifact(out / "metrics.json", run_record.REPORT)
        tracking.log_artifact(out / "report.txt", run_record.REPORT)
        for path in sorted(figures.iterdir()):
            tracking.log_artifact(path, f"{run_record.REPORT}/{PLOTS}")
    log.info("%s: done in %.2f s (MLflow run %s)", exercise_id, wall_seconds, active.run_id)
    return metrics


def _check_data(exercise: Exercise) -> None:
    """Raise DataWaiting, before any MLflow run opens, if the exercise's dataset waits."""
    path = processed_file(exercise.dataset) if exercise.dataset else None
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as npz:
            raise_if_waiting(npz)


def logged_steps(epochs: int) -> list[int]:
    """1-based epochs to log: all of them, or every k-th and the last beyond MAX_LOGGED_STEPS."""
    every = max(1, math.ceil(epochs / MAX_LOGGED_STEPS))
    steps = list(range(1, epochs + 1, every))
    return steps if steps[-1] == epochs else [*steps, epochs]


def _write_history(path: Path, history: dict[str, list[float]]) -> None:
    names = list(history)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["epoch", *names])
    for epoch in range(max(len(values) for values in history.values())):
        writer.writerow(
            [epoch + 1, *(history[n][epoch] if epoch < len(history[n]) else "" for n in names)]
        )
    write_text(path, buffer.getvalue())

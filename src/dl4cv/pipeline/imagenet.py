"""imagenet (book ch 20): top-k ImageNet labels of some images by five pre-trained networks.

Writes reports/experiments/imagenet_pretrained/: report.txt (per image, per network, the top-k),
predictions.json (the same, structured), annotated/<network>/<image>.png (the top-k drawn on the
image), rejects.csv (files that are not images) and metrics.json (seconds per image per network).
With `imagenet.enabled: false` (the default: the weights are not on a fresh machine) the record
only says that the stage was skipped and how to run it, so `dvc repro` stays green offline.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import cv2
import numpy as np

from dl4cv import tracking
from dl4cv.config import ConfigError, ImageNet, Params
from dl4cv.data.formats import write_rejects
from dl4cv.data.loaders import Reject
from dl4cv.imagenet import (
    NETWORKS,
    ImageNetClassifier,
    Located,
    Prediction,
    draw_predictions,
    image_files,
    load_class_index,
    locate_files,
    read_images,
)
from dl4cv.runtime import backend
from dl4cv.runtime.fileio import write_json, write_text
from dl4cv.runtime.paths import report_dir
from dl4cv.tracking import run_record

log = logging.getLogger(__name__)

EXPERIMENT = "imagenet_pretrained"
CHAPTER = 20
ANNOTATED = "annotated"
HOW_TO_ENABLE = (
    "put the weights files in Keras' cache (~/.keras/models/) or name them under "
    "imagenet.weights (docs/imagenet.md), then "
    "`dvc exp run -S imagenet.enabled=true`"
)

# image file name -> network -> its top-k predictions
Results = dict[str, dict[str, list[Prediction]]]


def run(exp_id: str, params: Params) -> dict:
    """Write reports/experiments/imagenet_pretrained/ (report.txt, predictions.json, annotated
    PNGs, rejects.csv, metrics.json) and log it to MLflow; only a `skipped` record when
    imagenet.enabled is false."""
    if exp_id != EXPERIMENT:
        raise ConfigError(f"imagenet: unknown experiment {exp_id!r}; this stage runs {EXPERIMENT}")
    started = time.perf_counter()
    settings = params.imagenet
    out = report_dir(EXPERIMENT)
    if not settings.enabled:
        return _write_skipped(out, params, started)

    # Everything that can be missing is checked before anything is built or written.
    weights, labels_file = locate_files(settings)
    labels = load_class_index(labels_file)
    images, rejects = read_images(image_files(settings.images))
    if not images:
        raise ConfigError(
            f"imagenet.images: none of the {len(rejects)} files is a readable image: "
            + "; ".join(f"{r.name}: {r.reason}" for r in rejects)
        )

    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / ANNOTATED).mkdir(parents=True)
    try:
        with run_record.record(
            "imagenet", EXPERIMENT, params, tags={"keras_backend": backend.name()}
        ) as active:
            tracking.log_params(tracking.flatten("imagenet", settings))
            results, timings = _classify_all(
                settings, weights, labels, images, staging, params.seed
            )
            metrics = {
                "experiment": EXPERIMENT,
                "chapter": CHAPTER,
                "profile": params.profile,
                "mlflow_run_id": active.run_id,
                "skipped": False,
                "backend": backend.name(),
                "images": len(images),
                "rejected_images": len(rejects),
                "models": list(settings.models),
                "top": settings.top,
                "weights": {name: found.origin for name, found in weights.items()},
                **timings,
                "wall_seconds": round(time.perf_counter() - started, 3),
            }
            write_json(staging / "predictions.json", _as_json(results))
            write_text(
                staging / "report.txt", _report_text(results, rejects, weights, settings.top)
            )
            write_rejects(staging / "rejects.csv", rejects)
            write_json(staging / "metrics.json", metrics)
            _replace(staging, out)
            tracking.log_metrics(
                {
                    f"{name}_{key}": value
                    for key in ("seconds_per_image", "first_image_seconds", "load_seconds")
                    for name, value in timings[key].items()
                }
                | {"images": len(images), "rejected_images": len(rejects)}
            )
            for path in sorted(out.rglob("*")):
                if path.is_file():
                    folder = Path(run_record.REPORT) / path.parent.relative_to(out)
                    tracking.log_artifact(path, str(folder))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info(
        "%d images (%d set aside) classified by %s; record in %s",
        len(images),
        len(rejects),
        ", ".join(settings.models),
        out,
    )
    return metrics


def _classify_all(
    settings: ImageNet,
    weights: dict[str, Located],
    labels: list[str],
    images: dict[str, np.ndarray],
    staging: Path,
    seed: int,
) -> tuple[Results, dict[str, dict[str, float]]]:
    """Run each network over every image, one network in memory at a time (a VGG is 0.5 GB)."""
    keras = backend.load_keras()

    results: Results = {name: {} for name in images}
    timings: dict[str, dict[str, float]] = {
        "load_seconds": {},
        "first_image_seconds": {},
        "seconds_per_image": {},
    }
    for name in settings.models:
        network = NETWORKS[name]
        backend.seed_everything(seed)  # random weights (tests, smoke runs) are then repeatable
        start = time.perf_counter()
        classifier = ImageNetClassifier.load(network, weights[name].path, labels)
        timings["load_seconds"][name] = round(time.perf_counter() - start, 3)
        seconds = []
        for image_name, image in images.items():
            start = time.perf_counter()
            predictions = classifier.classify(image, settings.top)
            seconds.append(time.perf_counter() - start)
            results[image_name][name] = predictions
            title = f"{network.constructor} ({network.input_size}x{network.input_size})"
            _write_png(
                staging / ANNOTATED / name / f"{image_name}.png",
                draw_predictions(image, predictions, title),
            )
            log.info(
                "%s %s: %s %.2f%%",
                name,
                image_name,
                predictions[0].label,
                100 * predictions[0].probability,
            )
        # The first call also traces the network: reported apart from the steady state.
        timings["first_image_seconds"][name] = round(seconds[0], 4)
        steady = seconds[1:] or seconds
        timings["seconds_per_image"][name] = round(sum(steady) / len(steady), 4)
        del classifier
        keras.backend.clear_session()
    return results, timings


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"{path}: OpenCV could not write the PNG")


def _replace(staging: Path, out: Path) -> None:
    """Swap the finished record in for the old one, so no stale PNG of an earlier run stays."""
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


def _as_json(results: Results) -> dict:
    return {
        image: {
            model: [{"label": p.label, "probability": p.probability} for p in predictions]
            for model, predictions in by_model.items()
        }
        for image, by_model in results.items()
    }


def _report_text(
    results: Results, rejects: list[Reject], weights: dict[str, Located], top: int
) -> str:
    lines = [f"ImageNet top-{top} predictions by pre-trained networks (book ch 20)", ""]
    lines += [
        f"weights: {name}: {found.origin}" + (f" ({found.path})" if found.path else "")
        for name, found in weights.items()
    ]
    for image, by_model in results.items():
        lines += ["", image]
        for model, predictions in by_model.items():
            size = NETWORKS[model].input_size
            lines.append(f"  {model} ({size}x{size}):")
            lines += [
                f"    {rank}. {p.label:<30} {p.probability:8.2%}"
                for rank, p in enumerate(predictions, 1)
            ]
    if rejects:
        lines += ["", f"set aside ({len(rejects)} files, not images):"]
        lines += [f"  {r.name}: {r.reason}" for r in rejects]
    return "\n".join(lines) + "\n"


def _write_skipped(out: Path, params: Params, started: float) -> dict:
    """The record of a disabled stage: every declared output exists, and says why it is empty."""
    reason = "imagenet.enabled is false (the default): the pipeline never downloads the weights"
    metrics = {
        "experiment": EXPERIMENT,
        "chapter": CHAPTER,
        "profile": params.profile,
        "mlflow_run_id": None,
        "skipped": True,
        "reason": reason,
        "images": 0,
        "models": [],
    }
    shutil.rmtree(out, ignore_errors=True)
    (out / ANNOTATED).mkdir(parents=True)
    write_text(out / "report.txt", f"Skipped: {reason}.\nTo run it: {HOW_TO_ENABLE}.\n")
    write_json(out / "predictions.json", {})
    write_rejects(out / "rejects.csv", [])
    metrics["wall_seconds"] = round(time.perf_counter() - started, 3)
    write_json(out / "metrics.json", metrics)
    log.info("skipped: %s; to run it: %s", reason, HOW_TO_ENABLE)
    return metrics

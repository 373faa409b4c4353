"""Ch 22 stages: `demo_video` builds the default input, `detect` labels the faces of a video.

`detect` writes reports/experiments/smile_detect/: the annotated video (video/annotated.mp4,
or .avi where OpenCV cannot write MPEG-4), frames.csv (one row per face found) and
metrics.json, all logged to an MLflow run named smile_detect. When the video has a truth CSV
beside it (the demo video does), the metrics also say how many true faces were found and how
many of those got their true label.
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
import time
from collections import Counter

import cv2
import numpy as np

from dl4cv import tracking
from dl4cv.config import IMAGE_ZIPS, WEBCAM, ConfigError, Params
from dl4cv.data.formats import ProcessedDataset
from dl4cv.data.loaders import Entry, ZipSource
from dl4cv.data.sources import DownloadError, read_descriptor
from dl4cv.data.splits import Split
from dl4cv.detection import FaceDetector, SmileDetector, detect_video, open_capture
from dl4cv.detection.demo import build_demo_video, pick_faces, read_truth, score, truth_file
from dl4cv.detection.faces import SMILING
from dl4cv.pipeline.train import FINAL_KERAS, RUN_FILE
from dl4cv.runtime import backend
from dl4cv.runtime.fileio import read_json, write_json, write_text
from dl4cv.runtime.paths import (
    demo_video,
    model_dir,
    processed_file,
    raw_dir,
    report_dir,
    split_file,
)
from dl4cv.tracking import run_record
from dl4cv.training.state import BEST_FILE

log = logging.getLogger(__name__)

DETECT_ID = "smile_detect"  # the record's name under reports/experiments/ and in MLflow
CHAPTER = 22
FRAME_FIELDS = ["frame", "face", "x", "y", "w", "h", "label", "probability"]


def build_demo(params: Params) -> dict:
    """Write data/demo/<dataset>.avi and its truth CSV from test-split faces of the dataset
    named by detect.demo.dataset, at the archive's own resolution (64x64 for SMILES)."""
    spec = params.detect.demo
    name = params.dataset(spec.dataset).name
    processed = ProcessedDataset.load(processed_file(name))
    split = Split.from_json(read_json(split_file(name)))
    fetched = read_descriptor(raw_dir(name))
    source = fetched.source
    if source["format"] not in IMAGE_ZIPS:
        raise ConfigError(
            f"detect.demo.dataset: {name!r} is a {source['format']} dataset; the demo video "
            f"pastes image files, so it needs one of the formats {list(IMAGE_ZIPS)}"
        )
    picked = pick_faces(processed.labels, split.test, spec.faces, params.seed)
    if len(picked) < spec.faces:
        log.warning("only %d test faces for the %d asked", len(picked), spec.faces)
    archive = ZipSource(
        raw_dir(name) / fetched.file,
        source.get("root"),
        source.get("splits"),
        source.get("classes"),
    )
    faces = []
    for i in picked:
        data = archive.read(Entry(processed.ids[i], processed.classes[processed.labels[i]]))
        face = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        if face is None:  # preprocess decoded it: the raw file changed underneath
            raise DownloadError(
                f"{raw_dir(name) / fetched.file}: {processed.ids[i]} no longer decodes"
            )
        faces.append(face)
    labels = [processed.classes[processed.labels[i]] for i in picked]
    video = demo_video(name)
    truth = build_demo_video(faces, labels, [processed.ids[i] for i in picked], spec, video)
    counts = Counter(labels)
    log.info(
        "%s: %d frames, %d test faces (%s)",
        video,
        truth[-1].frame + 1,
        len(truth),
        ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
    )
    return {"video": str(video), "faces": len(truth), "classes": dict(counts)}


def run(params: Params) -> dict:
    """Write reports/experiments/smile_detect/ for detect.video, labelled by the model of
    detect.experiment; log it to MLflow."""
    started = time.perf_counter()
    spec = params.detect
    exp = params.experiment(spec.experiment)
    if not exp.is_keras:
        raise ConfigError(
            f"detect.experiment: {exp.id!r} is not a network (model {exp.model.name})"
        )
    if not spec.video.startswith(WEBCAM):
        open_capture(spec.video).release()  # a missing or unreadable file fails before Keras
    keras = backend.load_keras()  # after the checks: loading Keras takes seconds

    trained = model_dir(exp.id)
    name = BEST_FILE if exp.evaluate.checkpoint == "best" else FINAL_KERAS
    if not (trained / name).exists():
        raise FileNotFoundError(f"{trained / name}: missing; train {exp.id} first (dvc repro)")
    model = keras.models.load_model(trained / name)
    model_run = read_json(trained / RUN_FILE)["run_id"]
    classes = _classes(exp.dataset)
    detector = SmileDetector(
        FaceDetector(spec.cascade), model, classes, params.preprocess.interpolation
    )

    out = report_dir(DETECT_ID)
    shutil.rmtree(out / "video", ignore_errors=True)  # an .avi of an earlier fallback
    with run_record.record(
        "detect", DETECT_ID, params, tags={"model_experiment": exp.id, "model_run_id": model_run}
    ) as active:
        found = detect_video(spec.video, detector, out / "video" / "annotated", spec.max_frames)
        labels = Counter(face.label for _, _, face in found.rows)
        metrics = {
            "experiment": DETECT_ID,
            "chapter": CHAPTER,
            "profile": params.profile,
            "model_experiment": exp.id,
            "video": spec.video,
            "frames": found.frames,
            "frames_declared": found.declared_frames,
            "frames_with_faces": found.frames_with_faces,
            "faces": found.faces,
            "labels": {c: labels.get(c, 0) for c in classes},
            "smiling_fraction": labels.get(SMILING, 0) / found.faces if found.faces else None,
            "fps": found.fps,
            "seconds": found.seconds,
            "source_fps": found.source_fps,
            "annotated_video": found.video.name,
            "codec": found.codec,
            "mlflow_run_id": active.run_id,
        }
        truth = truth_file(spec.video)
        if not spec.video.startswith(WEBCAM) and truth.exists():
            metrics["truth"] = score(found.rows, read_truth(truth))
        metrics["wall_seconds"] = time.perf_counter() - started
        _write_frames(out / "frames.csv", found.rows)
        write_json(out / "metrics.json", metrics)

        tracking.log_params(
            tracking.flatten("detect", spec) | {"profile": params.profile, "classes": classes}
        )
        tracking.set_tags({"codec": found.codec})
        tracking.log_metrics(_numbers(metrics))
        for path in (out / "frames.csv", out / "metrics.json", found.video):
            tracking.log_artifact(path, run_record.REPORT)
    log.info(
        "%s: %d frames, %d faces in %d frames, %.1f frames/s; %s (%s)",
        spec.video,
        found.frames,
        found.faces,
        found.frames_with_faces,
        found.fps,
        found.video,
        found.codec,
    )
    if "truth" in metrics:
        t = metrics["truth"]
        log.info(
            "truth: %d of %d faces found, %d false detections; labels right: %s",
            t["faces_found"],
            t["truth_faces"],
            t["false_detections"],
            "n/a (no face found)" if t["face_accuracy"] is None else f"{t['face_accuracy']:.3f}",
        )
    return metrics


def _classes(dataset: str) -> list[str]:
    path = processed_file(dataset)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; run the preprocess stage first (dvc repro)")
    with np.load(path, allow_pickle=False) as npz:
        return npz["classes"].tolist()


def _write_frames(path, rows) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(FRAME_FIELDS)
    for frame, index, face in rows:
        writer.writerow(
            [frame, index, face.x, face.y, face.w, face.h, face.label, f"{face.probability:.4f}"]
        )
    write_text(path, buffer.getvalue())


def _numbers(metrics: dict, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of the metrics, flattened for MLflow (truth.detection_rate...)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_numbers(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    return out

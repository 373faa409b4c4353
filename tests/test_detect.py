"""Ch 22 detect: Haar faces + a classifier over real video frames, and the demo video.

The face is a real one available offline wherever the project installs: Matplotlib's sample
photo of Grace Hopper (`grace_hopper.jpg`, a public-domain U.S. Navy portrait). The classifier
is a fresh LeNet (random weights): the tests check the video path (boxes, rows, frames,
files, MLflow), not what the network has learned.
"""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import cv2
import matplotlib.cbook
import numpy as np
import pytest

from dl4cv.config import Cascade, ConfigError, parse_params
from dl4cv.data.formats import ProcessedDataset, read_raw
from dl4cv.data.sources import Fetched, sha256sum
from dl4cv.data.splits import make_split
from dl4cv.detection import FaceDetector, SmileDetector, VideoError, detect_video, video_writer
from dl4cv.detection import video as video_module
from dl4cv.detection.demo import TruthFace, pick_faces, read_truth, score
from dl4cv.detection.faces import GREEN, RED, Face
from dl4cv.pipeline import detect as detect_stage
from dl4cv.runtime.fileio import write_json
from dl4cv.runtime.paths import model_dir, processed_file, raw_dir, report_dir, split_file
from tests.conftest import encode, toy_params

CLASSES = ["not_smiling", "smiling"]
HOPPER_FACE = (155, 105, 222, 222)  # the cascade's box on the full 512x600 photo


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    image = cv2.imread(str(path))
    assert image is not None and image.shape == (600, 512, 3)
    return image


@pytest.fixture(scope="module")
def lenet():
    import keras

    from dl4cv.nn.conv.lenet import LeNet

    keras.utils.set_random_seed(0)
    return LeNet.build(28, 28, 1, len(CLASSES))


def hopper_frames(hopper: np.ndarray) -> tuple[list[np.ndarray], list[tuple[int, int] | None]]:
    """Six 320x240 frames: her portrait at 0.4 scale at three places, and faceless noise."""
    small = cv2.resize(hopper, None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)  # 240x205
    rng = np.random.default_rng(0)
    frames, places = [], []
    for left in (0, None, 60, None, 115, None):
        frame = rng.integers(90, 110, (240, 320, 3), dtype=np.uint8)
        if left is not None:
            frame[:, left : left + small.shape[1]] = small
        frames.append(frame)
        places.append(None if left is None else (left, 0))
    return frames, places


def write_video(path: Path, frames: list[np.ndarray], fps: float = 5.0) -> Path:
    with video_writer(path.with_suffix(""), fps, (frames[0].shape[1], frames[0].shape[0])) as w:
        for frame in frames:
            w.write(frame)
    return w.path


def read_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def test_faces_in_a_video_are_boxed_labelled_and_written(tmp_path: Path, hopper, lenet):
    frames, places = hopper_frames(hopper)
    video = write_video(tmp_path / "in", frames)
    detector = SmileDetector(FaceDetector(Cascade()), lenet, CLASSES)

    found = detect_video(str(video), detector, tmp_path / "out" / "annotated")

    assert found.frames == 6 and found.declared_frames == 6
    assert found.frames_with_faces == 3 and found.faces == 3
    assert [frame for frame, _, _ in found.rows] == [0, 2, 4]
    for frame, index, face in found.rows:
        left, top = places[frame]
        # the portrait's face (at 0.4 scale) is where the cascade finds it on the photo
        x, y, w, h = (round(v * 0.4) for v in HOPPER_FACE)
        assert index == 0
        assert abs(face.x - (left + x)) <= 6 and abs(face.y - (top + y)) <= 6
        assert abs(face.w - w) <= 12
        assert face.label in CLASSES and 0.5 <= face.probability <= 1.0
    assert found.codec == "mp4v" and found.video == tmp_path / "out" / "annotated.mp4"

    annotated = read_frames(found.video)
    assert len(annotated) == 6 and annotated[0].shape == frames[0].shape
    _, _, face = found.rows[0]
    color = GREEN if face.label == "smiling" else RED
    edge = annotated[0][face.y + face.h // 2, face.x - 1 : face.x + 2].astype(int)
    assert np.abs(edge - np.array(color)).sum(axis=1).min() < 90  # the box, through mp4v
    # frames without a face pass through untouched (up to the codec)
    assert np.abs(annotated[1].astype(int) - frames[1]).mean() < 6


def test_max_frames_stops_early(tmp_path: Path, hopper, lenet):
    frames, _ = hopper_frames(hopper)
    video = write_video(tmp_path / "in", frames)
    detector = SmileDetector(FaceDetector(Cascade()), lenet, CLASSES)
    found = detect_video(str(video), detector, tmp_path / "annotated", max_frames=3)
    assert found.frames == 3 and found.faces == 2
    assert len(read_frames(found.video)) == 3


def test_unreadable_videos_are_named(tmp_path: Path, lenet):
    detector = SmileDetector(FaceDetector(Cascade()), lenet, CLASSES)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not a movie" * 100)
    with pytest.raises(VideoError, match=r"corrupt\.mp4: not a video OpenCV can read"):
        detect_video(str(corrupt), detector, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match=r"missing\.mp4: no such video file"):
        detect_video(str(tmp_path / "missing.mp4"), detector, tmp_path / "out")
    with pytest.raises(VideoError, match=r"camera 9 cannot be opened"):
        detect_video("webcam:9", detector, tmp_path / "out", max_frames=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.mp4"]


def test_writer_falls_back_to_motion_jpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # GStreamer is not in opencv-python-headless: a real writer that fails to open
    monkeypatch.setitem(video_module.CODECS, "mp4v", (".mp4", cv2.CAP_GSTREAMER))
    frame = np.full((48, 64, 3), 120, np.uint8)
    with video_writer(tmp_path / "annotated", 5.0, (64, 48)) as writer:
        writer.write(frame)
        writer.write(frame)
    assert (writer.codec, writer.path.name) == ("MJPG", "annotated.avi")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.avi"]
    assert len(read_frames(writer.path)) == 2


def test_a_failed_write_leaves_no_video(tmp_path: Path):
    with (
        pytest.raises(VideoError, match="frame of 10x10"),
        video_writer(tmp_path / "v", 5.0, (64, 48)) as writer,
    ):
        writer.write(np.zeros((48, 64, 3), np.uint8))
        writer.write(np.zeros((10, 10, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_score_counts_found_missed_and_false_faces():
    truth = [
        TruthFace(0, 0, 0, 0, 100, 100, "smiling", "a"),
        TruthFace(0, 1, 200, 0, 100, 100, "not_smiling", "b"),
        TruthFace(1, 0, 0, 0, 100, 100, "smiling", "c"),
    ]
    rows = [
        (0, 0, Face(10, 10, 80, 80, "smiling", 0.9)),  # a, right
        (0, 1, Face(30, 30, 20, 20, "not_smiling", 0.6)),  # inside a, smaller: not its label
        (0, 2, Face(210, 10, 80, 80, "smiling", 0.7)),  # b, wrong
        (1, 0, Face(400, 10, 50, 50, "smiling", 0.8)),  # nothing there: c is missed
    ]
    result = score(rows, truth)
    assert result["truth_faces"] == 3 and result["faces_found"] == 2
    assert result["detection_rate"] == pytest.approx(2 / 3)
    assert result["false_detections"] == 1
    assert result["face_accuracy"] == 0.5
    assert result["per_class"]["smiling"] == {"faces": 2, "found": 1, "correct": 1}


def test_pick_faces_balances_classes_with_a_seed():
    labels = np.array([0] * 30 + [1] * 4)
    test = list(range(0, 34, 1))
    picked = pick_faces(labels, test, 10, seed=3)
    assert len(picked) == len(set(picked)) == 10
    assert sorted(labels[picked].tolist()) == [0] * 6 + [1] * 4  # all 4 of the rarer class
    assert pick_faces(labels, test, 10, seed=3) == picked
    assert pick_faces(labels, test, 10, seed=4) != picked


def hopper_crops(hopper: np.ndarray) -> list[np.ndarray]:
    """Eight 64x64 gray crops of her face, cut as tight as SMILES crops, each a little
    different (shifted, mirrored, darker), standing in for eight people."""
    gray = cv2.cvtColor(hopper, cv2.COLOR_BGR2GRAY)
    x, y, w, h = HOPPER_FACE
    crops = []
    for i, (dx, dy) in enumerate([(0, 0), (6, 4), (-6, 4), (0, 8)] * 2):
        crop = gray[y + 20 + dy : y + h - 10 + dy, x + 15 + dx : x + w - 15 + dx]
        crop = cv2.resize(crop, (64, 64), interpolation=cv2.INTER_AREA)
        crops.append(cv2.flip(crop, 1) if i >= 4 else crop)
    crops[3] = (crops[3] * 0.7).astype(np.uint8)
    return crops


def test_demo_video_then_detect_stage_end_to_end(in_tmp: Path, mlflow_store, hopper, lenet):
    # the dataset as GitHub's SMILES archive would hold it, through download's descriptor,
    # preprocess and split as the pipeline writes them
    crops = hopper_crops(hopper)
    raw = toy_params(
        {
            "smile_detection": {
                "chapter": 22,
                "dataset": "faces",
                "model": {"name": "lenet"},
                "optimizer": {"name": "adam", "learning_rate": 0.001},
            }
        }
    )
    source = {
        "format": "smiles-github-zip",
        "root": "SMILEsmileD-master/SMILEs",
        "classes": {"positives/positives7": "smiling", "negatives/negatives7": "not_smiling"},
    }
    raw["datasets"]["faces"] = {
        "source": source,
        "image": {"width": 28, "height": 28, "channels": 1},
        "split": {"method": "stratified", "test_size": 0.5, "random_state": 42},
    }
    raw["detect"] = {"video": "data/demo/faces.avi", "demo": {"dataset": "faces", "faces": 8}}
    params = parse_params(raw)
    zip_path = raw_dir("faces") / "faces.zip"
    zip_path.parent.mkdir(parents=True)
    with zipfile.ZipFile(zip_path, "w") as archive:
        for i, crop in enumerate(crops):
            folder = "positives/positives7" if i % 2 else "negatives/negatives7"
            archive.writestr(f"SMILEsmileD-master/SMILEs/{folder}/{i}.jpg", encode(crop))
    fetched = Fetched("faces", zip_path.name, sha256sum(zip_path), "mirror", "", source)
    fetched.write(raw_dir("faces"))
    image = params.dataset("faces").image
    processed = read_raw(fetched, raw_dir("faces"), image, params.preprocess, progress=False)
    processed.save(processed_file("faces"))
    spec = params.dataset("faces").split
    split = make_split(processed.labels, processed.origin, spec)
    subset = params.dataset("faces").subset
    write_json(
        split_file("faces"),
        split.to_json("faces", spec, subset, processed.labels, processed.classes),
    )
    lenet.save(_model_file())
    write_json(model_dir("smile_detection") / "run.json", {"run_id": "trained-run"})

    demo = detect_stage.build_demo(params)
    assert demo["faces"] == 4  # the test half
    truth = read_truth(Path("data/demo/faces.truth.csv"))
    assert [(t.frame, t.face) for t in truth] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert {t.id for t in truth} == {processed.ids[i] for i in split.test}
    assert len(read_frames(Path("data/demo/faces.avi"))) == 2

    metrics = detect_stage.run(params)

    out = report_dir("smile_detect")
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["experiment"] == "smile_detect" and metrics["chapter"] == 22
    assert metrics["frames"] == 2 and metrics["codec"] == "mp4v"
    assert metrics["truth"]["truth_faces"] == 4
    assert metrics["truth"]["detection_rate"] == 1.0  # every pasted face is found
    assert metrics["truth"]["false_detections"] == metrics["faces"] - 4
    with open(out / "frames.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == metrics["faces"] and set(rows[0]) >= {"frame", "label", "probability"}
    assert sum(r["label"] == "smiling" for r in rows) / len(rows) == metrics["smiling_fraction"]
    assert len(read_frames(out / "video" / "annotated.mp4")) == 2

    from mlflow import MlflowClient

    client = MlflowClient(mlflow_store)
    run = client.get_run(metrics["mlflow_run_id"])
    assert run.info.run_name == "smile_detect"
    assert run.data.tags["model_run_id"] == "trained-run"
    assert run.data.metrics["truth.detection_rate"] == 1.0
    assert run.data.params["detect.cascade.min_neighbors"] == "5"
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert logged == {"report/frames.csv", "report/metrics.json", "report/annotated.mp4"}


def _model_file() -> Path:
    path = model_dir("smile_detection") / "model.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_demo_faces_need_an_image_archive(in_tmp: Path):
    raw = toy_params({}, dataset="digits")
    raw["detect"] = {"demo": {"dataset": "digits"}}
    params = parse_params(raw)
    Fetched("digits", "digits.npz", "0" * 64, "bundled", "", {"format": "sklearn-digits"}).write(
        raw_dir("digits")
    )
    ProcessedDataset(np.zeros((1, 8, 8, 1), np.uint8), np.array([0]), ["0"], ["all/0"], [""]).save(
        processed_file("digits")
    )
    write_json(split_file("digits"), {"train": [], "test": [0], "val": []})
    with pytest.raises(ConfigError, match="'digits' is a sklearn-digits dataset"):
        detect_stage.build_demo(params)


def test_detect_config_errors_name_the_key():
    for detect, message in (
        ({"video": "webcam:0"}, r"detect\.max_frames: a webcam never ends"),
        ({"video": "webcam:front"}, r"detect\.video: expected webcam:<index>"),
        ({"cascade": {"min_size": [30]}}, r"detect\.cascade\.min_size: expected \[width"),
        ({"demo": {"margin": -1}}, r"detect\.demo\.margin: expected a number >= 0, got -1\.0"),
    ):
        raw = toy_params({})
        raw["detect"] = detect
        with pytest.raises(ConfigError, match=message):
            parse_params(raw)

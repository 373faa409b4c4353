"""A demo video with known answers: real test-split faces pasted into frames.

No video ships with the book's data, so `detect` gets a default input built deterministically
from SMILES test faces (never seen in training). The 64x64 crops are tight around the face,
so tight that the Haar cascade finds almost none of them as they are: each is enlarged to
`face_size` and framed by `margin` (a fraction of it) of its own edge pixels, which let the
cascade find about 9 in 10 of them (measured on 300 SMILES faces: 0.93 at 128 px with a
50% replicated margin, 0.87 with a flat gray margin, 0.00 without a margin). The pasted boxes
and true labels go to a truth CSV beside the video, against which `score` measures the
detection rate and the labels given to the detected faces.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dl4cv.config import DemoVideo
from dl4cv.detection.faces import Face
from dl4cv.detection.video import video_writer
from dl4cv.runtime.fileio import write_text

TRUTH_FIELDS = ["frame", "face", "x", "y", "w", "h", "label", "id"]
DEMO_QUALITY = 95  # Motion-JPEG quality: the demo faces should reach the detector intact


def truth_file(video: str | Path) -> Path:
    """The truth CSV that goes with a video: `smiles.avi` -> `smiles.truth.csv`."""
    video = Path(video)
    return video.with_name(f"{video.stem}.truth.csv")


@dataclass(frozen=True)
class TruthFace:
    frame: int
    face: int
    x: int
    y: int
    w: int
    h: int
    label: str
    id: str

    def contains(self, point: tuple[float, float]) -> bool:
        px, py = point
        return self.x <= px < self.x + self.w and self.y <= py < self.y + self.h


def pick_faces(labels: np.ndarray, candidates: Sequence[int], count: int, seed: int) -> list[int]:
    """`count` of `candidates`, as evenly spread over the classes as they allow, in a seeded
    random order (so a frame's faces are of any class, in any place)."""
    rng = np.random.default_rng(seed)
    candidates = np.asarray(candidates)
    pools = [
        rng.permutation(candidates[labels[candidates] == c]).tolist()
        for c in np.unique(labels[candidates])
    ]
    picked: list[int] = []
    while len(picked) < count and any(pools):
        for pool in pools:
            if pool and len(picked) < count:
                picked.append(int(pool.pop()))
    return [int(i) for i in rng.permutation(picked)]


def frame_tile(face: np.ndarray, face_size: int, margin: float) -> tuple[np.ndarray, int]:
    """A gray face enlarged to face_size and framed by its own edge pixels; BGR tile and the
    face's offset inside it."""
    big = cv2.resize(face, (face_size, face_size), interpolation=cv2.INTER_CUBIC)
    pad = round(face_size * margin)
    tile = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return cv2.cvtColor(tile, cv2.COLOR_GRAY2BGR), pad


def build_demo_video(
    faces: Sequence[np.ndarray],
    labels: Sequence[str],
    ids: Sequence[str],
    spec: DemoVideo,
    video: Path,
) -> list[TruthFace]:
    """Write `video` (Motion-JPEG .avi, which every OpenCV build writes alike) with
    `spec.per_frame` faces side by side per frame, and its truth CSV; return the truth."""
    if not faces:
        raise ValueError("no faces to build a demo video from")
    if video.suffix != ".avi":
        raise ValueError(f"{video}: the demo video is Motion-JPEG, expected a .avi path")
    tile_size = spec.face_size + 2 * round(spec.face_size * spec.margin)
    size = (tile_size * spec.per_frame, tile_size)
    truth: list[TruthFace] = []
    with video_writer(video.with_suffix(""), spec.fps, size, ("MJPG",), DEMO_QUALITY) as writer:
        for start in range(0, len(faces), spec.per_frame):
            frame = np.zeros((size[1], size[0], 3), np.uint8)
            for slot in range(min(spec.per_frame, len(faces) - start)):
                k = start + slot
                tile, pad = frame_tile(faces[k], spec.face_size, spec.margin)
                frame[:, slot * tile_size : (slot + 1) * tile_size] = tile
                truth.append(
                    TruthFace(
                        writer.frames,
                        slot,
                        slot * tile_size + pad,
                        pad,
                        spec.face_size,
                        spec.face_size,
                        labels[k],
                        ids[k],
                    )
                )
            writer.write(frame)
    buffer = io.StringIO()
    out = csv.writer(buffer)
    out.writerow(TRUTH_FIELDS)
    out.writerows([getattr(t, f) for f in TRUTH_FIELDS] for t in truth)
    write_text(truth_file(video), buffer.getvalue())
    return truth


def read_truth(path: Path) -> list[TruthFace]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames != TRUTH_FIELDS:
            raise ValueError(
                f"{path}: expected the columns {TRUTH_FIELDS}, got {reader.fieldnames}"
            )
        return [
            TruthFace(
                *(int(row[f]) for f in TRUTH_FIELDS[:6]),
                label=row["label"],
                id=row["id"],
            )
            for row in reader
        ]


def score(rows: Sequence[tuple[int, int, Face]], truth: Sequence[TruthFace]) -> dict:
    """How many true faces were found (a detection whose centre lies in the pasted box), how
    many detections hit no face, and how many found faces got their true label."""
    by_frame: dict[int, list[tuple[int, Face]]] = {}
    for frame, index, face in rows:
        by_frame.setdefault(frame, []).append((index, face))
    used: set[tuple[int, int]] = set()
    found = correct = 0
    per_class: dict[str, dict[str, int]] = {}
    for t in truth:
        counts = per_class.setdefault(t.label, {"faces": 0, "found": 0, "correct": 0})
        counts["faces"] += 1
        hits = [(i, f) for i, f in by_frame.get(t.frame, []) if t.contains(f.center)]
        if not hits:
            continue
        used.update((t.frame, i) for i, _ in hits)
        best = max((f for _, f in hits), key=lambda f: f.w * f.h)  # the face, not a part of it
        found += 1
        counts["found"] += 1
        if best.label == t.label:
            correct += 1
            counts["correct"] += 1
    return {
        "truth_faces": len(truth),
        "faces_found": found,
        "detection_rate": found / len(truth) if truth else None,
        "false_detections": sum((frame, index) not in used for frame, index, _ in rows),
        "face_accuracy": correct / found if found else None,
        "per_class": per_class,
    }

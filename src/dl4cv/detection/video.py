"""Read a video file or a webcam frame by frame; write annotated frames, atomically.

Writing tries MPEG-4 Part 2 ('mp4v', .mp4: the FFmpeg inside opencv-python-headless 4.x encodes
it; H.264 'avc1' it does not) and falls back to Motion-JPEG in an .avi ('MJPG'), which OpenCV
encodes by itself in every build. The result says which codec was used.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dl4cv.config import WEBCAM
from dl4cv.detection.faces import Face, annotate
from dl4cv.runtime.errors import InputError

log = logging.getLogger(__name__)

# fourcc -> (extension, OpenCV backend that writes it)
CODECS = {"mp4v": (".mp4", cv2.CAP_FFMPEG), "MJPG": (".avi", cv2.CAP_OPENCV_MJPEG)}
DEFAULT_FPS = 30.0  # when the source does not say (most webcams)


class VideoError(InputError, RuntimeError):
    """A video that cannot be opened, decoded or written."""


@dataclass
class Writer:
    """An open cv2.VideoWriter and what it writes: the final path and the codec."""

    video: cv2.VideoWriter
    path: Path
    codec: str
    size: tuple[int, int]  # width, height
    frames: int = 0

    def write(self, frame: np.ndarray) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:
            raise VideoError(
                f"{self.path}: frame of {frame.shape[1]}x{frame.shape[0]}, the video is "
                f"{self.size[0]}x{self.size[1]}"
            )
        self.video.write(frame)
        self.frames += 1


@contextmanager
def video_writer(
    stem: Path,
    fps: float,
    size: tuple[int, int],
    codecs: tuple[str, ...] = ("mp4v", "MJPG"),
    quality: int | None = None,
) -> Iterator[Writer]:
    """Write `stem` + the first codec's extension that opens; renamed into place on success.

    `quality` (0-100) sets Motion-JPEG's quality (OpenCV's default is 75)."""
    for codec in codecs:
        ext, api = CODECS[codec]
        path = stem.with_suffix(ext)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{ext}")  # the extension picks the container
        video = cv2.VideoWriter(str(tmp), api, cv2.VideoWriter_fourcc(*codec), fps, size)
        if not video.isOpened():
            tmp.unlink(missing_ok=True)
            log.info("codec %s: this OpenCV cannot write it; trying the next", codec)
            continue
        if quality is not None:
            video.set(cv2.VIDEOWRITER_PROP_QUALITY, quality)
        try:
            yield Writer(video, path, codec, size)
            video.release()
            os.replace(tmp, path)
        finally:
            video.release()
            tmp.unlink(missing_ok=True)
        return
    raise VideoError(f"{stem}: none of the codecs {list(codecs)} can be written by this OpenCV")


def open_capture(video: str) -> cv2.VideoCapture:
    """A video file, or `webcam:<index>` for OpenCV's camera <index>; clear errors otherwise."""
    if video.startswith(WEBCAM):
        index = int(video[len(WEBCAM) :])
        capture = cv2.VideoCapture(index)
        if not capture.isOpened():
            raise VideoError(f"detect.video {video!r}: camera {index} cannot be opened")
        return capture
    path = Path(video)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file (detect.video)")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VideoError(f"{path}: not a video OpenCV can read (corrupt, or an unknown format)")
    return capture


@dataclass
class Detections:
    """What a run over a video found: one row per face, counts, and timing."""

    rows: list[tuple[int, int, Face]] = field(default_factory=list)  # frame, face index, face
    frames: int = 0
    frames_with_faces: int = 0
    seconds: float = 0.0
    source_fps: float = 0.0
    declared_frames: int | None = None  # what the container claims; None for a camera
    video: Path | None = None
    codec: str = ""

    @property
    def faces(self) -> int:
        return len(self.rows)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def detect_video(
    video: str,
    label_faces: Callable[[np.ndarray], list[Face]],
    out_stem: Path,
    max_frames: int = 0,
) -> Detections:
    """Label the faces of every frame of `video` (up to `max_frames`, 0: all) and write the
    annotated frames to `out_stem`.mp4 (or .avi). A camera stops at `max_frames` or Ctrl-C."""
    capture = open_capture(video)
    live = video.startswith(WEBCAM)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if fps and math.isfinite(fps) and 0 < fps < 1000 else DEFAULT_FPS
        declared = None if live else int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        ok, frame = capture.read()
        if not ok:
            raise VideoError(f"{video}: opened, but no frame could be decoded")
        result = Detections(source_fps=fps, declared_frames=declared)
        size = (frame.shape[1], frame.shape[0])
        started = time.perf_counter()
        with video_writer(out_stem, fps, size) as writer:
            result.video, result.codec = writer.path, writer.codec
            try:
                while ok and (not max_frames or result.frames < max_frames):
                    faces = label_faces(frame)
                    result.rows.extend((result.frames, i, face) for i, face in enumerate(faces))
                    result.frames_with_faces += bool(faces)
                    writer.write(annotate(frame, faces))
                    result.frames += 1
                    ok, frame = capture.read()
            except KeyboardInterrupt:
                if not live:
                    raise
                log.info("stopped by the user after %d frames", result.frames)
        result.seconds = time.perf_counter() - started
    finally:
        capture.release()
    expected = min(declared, max_frames or declared) if declared else 0
    if result.frames < expected:
        log.warning(
            "%s: decoded %d of the %d frames the file declares (truncated or damaged?)",
            video,
            result.frames,
            expected,
        )
    return result

"""`detect:` (ch 22): faces found by a Haar cascade in a video, each labelled by a classifier."""

from __future__ import annotations

from pydantic import Field

from dl4cv.config.base import ConfigError, Int, Number, spec

WEBCAM = "webcam:"  # detect.video: `webcam:<index>` reads OpenCV camera <index>


@spec
class Cascade:
    """OpenCV's Haar frontal-face cascade and its detectMultiScale arguments (the book's)."""

    file: str = "haarcascade_frontalface_default.xml"  # a name under cv2.data.haarcascades
    scale_factor: Number = Field(1.1, gt=1)
    min_neighbors: Int = Field(5, ge=0)
    min_size: tuple[Int, ...] = (30, 30)  # width, height in pixels

    def __post_init__(self) -> None:
        if len(self.min_size) != 2 or min(self.min_size) < 1:
            raise ConfigError(f"min_size: expected [width, height] >= 1, got {list(self.min_size)}")


@spec
class DemoVideo:
    """The default input of `detect`: test-split faces of `dataset` pasted into frames, with
    the pasted boxes and true labels written beside it (`<video>.truth.csv`)."""

    dataset: str = "smiles"
    faces: Int = Field(200, ge=1)  # drawn from the test split, half per class (seeded by `seed`)
    per_frame: Int = Field(2, ge=1)  # faces side by side in one frame
    face_size: Int = Field(128, ge=8)  # the 64x64 crops are enlarged to this...
    margin: Number = Field(0.5, ge=0)  # ...and framed by this fraction of it on each side
    fps: Number = Field(10.0, gt=0)


@spec
class Detect:
    """Ch 22: find faces in a video (Haar cascade) and label each with a smile classifier."""

    experiment: str = "smile_detection"  # whose trained model classifies the faces
    video: str = "data/demo/smiles.avi"  # a video file, or webcam:<index>
    max_frames: Int = Field(0, ge=0)  # stop after this many frames; 0: the whole file
    cascade: Cascade = Cascade()
    demo: DemoVideo = DemoVideo()

    def __post_init__(self) -> None:
        if self.video.startswith(WEBCAM):
            if not self.video[len(WEBCAM) :].isdigit():
                raise ConfigError(f"video: expected webcam:<index>, got {self.video!r}")
            if self.max_frames == 0:
                raise ConfigError("max_frames: a webcam never ends; set a frame limit > 0")

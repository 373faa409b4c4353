"""Ch 22: smile detection in video: Haar-cascade faces, each labelled by a trained LeNet."""

from dl4cv.detection.faces import Face, FaceDetector, SmileDetector, annotate
from dl4cv.detection.video import VideoError, detect_video, open_capture, video_writer

__all__ = [
    "Face",
    "FaceDetector",
    "SmileDetector",
    "VideoError",
    "annotate",
    "detect_video",
    "open_capture",
    "video_writer",
]

"""Stage `detect` (see dvc.yaml): `python stages/detect.py` (the book's ch 22): Haar-cascade
faces of detect.video, each labelled smiling / not smiling by detect.experiment's model."""

from dl4cv.pipeline.cli import main

if __name__ == "__main__":
    main("detect", "dl4cv.pipeline.detect")

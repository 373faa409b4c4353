"""Stage `train` (see dvc.yaml): `python stages/train.py <experiment>`."""

from dl4cv.pipeline.cli import main

if __name__ == "__main__":
    main("train", "dl4cv.pipeline.train", "experiment")

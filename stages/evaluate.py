"""Stage `evaluate` (see dvc.yaml): `python stages/evaluate.py <experiment>`."""

from dl4cv.pipeline.cli import main

if __name__ == "__main__":
    main("evaluate", "dl4cv.pipeline.evaluate", "experiment")

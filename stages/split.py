"""Stage `split` (see dvc.yaml): `python stages/split.py <dataset>`."""

from dl4cv.pipeline.cli import main

if __name__ == "__main__":
    main("split", "dl4cv.pipeline.split", "dataset")

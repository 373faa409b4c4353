"""Stage `preprocess` (see dvc.yaml): `python stages/preprocess.py <dataset>`."""

from dl4cv.pipeline.cli import main

if __name__ == "__main__":
    main("preprocess", "dl4cv.pipeline.preprocess", "dataset")

"""Stage `download` (see dvc.yaml): `python stages/download.py <dataset>`."""

from dl4cv.pipeline.cli import main

if __name__ == "__main__":
    main("download", "dl4cv.pipeline.download", "dataset")

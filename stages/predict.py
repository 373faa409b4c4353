"""Stage `predict` (see dvc.yaml): `python stages/predict.py <prediction>` (the book's ch 13)."""

from dl4cv.pipeline.cli import main

if __name__ == "__main__":
    main("predict", "dl4cv.pipeline.predict", "prediction")

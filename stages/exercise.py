"""Stage `exercise` (see dvc.yaml): `python stages/exercise.py <exercise>`."""

from dl4cv.pipeline.cli import main

if __name__ == "__main__":
    main("exercise", "dl4cv.pipeline.exercise", "exercise")

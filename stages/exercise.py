"""Stages `exercises*` (see dvc.yaml): `python stages/exercise.py <exercise> [<exercise>...]`:
several cheap from-scratch examples in one process, each with its own record and MLflow run."""

from dl4cv.pipeline.cli import main

if __name__ == "__main__":
    main("exercise", "dl4cv.pipeline.exercise:run_group", "exercise", many=True)

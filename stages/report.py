"""Stage `report` (see dvc.yaml): `python stages/report.py` — the book's figures against ours."""

from dl4cv.pipeline.cli import main

if __name__ == "__main__":
    main("report", "dl4cv.report.book")

"""Stage `annotate` (see dvc.yaml), ch 21: `python stages/annotate.py`
-> data/labels/captcha.csv: digit crops and their labels (file or browser)."""

from dl4cv.pipeline.cli import main

if __name__ == "__main__":
    main("annotate", "dl4cv.pipeline.annotate")

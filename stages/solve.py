"""Stage `solve` (see dvc.yaml), ch 21: `python stages/solve.py`
-> reports/experiments/captcha_solve/: new captchas read end to end."""

from dl4cv.pipeline.cli import main

if __name__ == "__main__":
    main("solve", "dl4cv.pipeline.solve")

"""Stage `captcha_preprocess` (see dvc.yaml), ch 21: `python stages/captcha_preprocess.py`
-> data/processed/captcha.npz: 28x28 digit crops."""

from dl4cv.pipeline.cli import main

if __name__ == "__main__":
    main("captcha_preprocess", "dl4cv.pipeline.captcha_preprocess")

"""Stage `captcha_download` (see dvc.yaml), ch 21: `python stages/captcha_download.py`
-> data/raw/captcha/: the captchas (generator or HTTP)."""

from dl4cv.pipeline.cli import main

if __name__ == "__main__":
    main("captcha_download", "dl4cv.pipeline.captcha_download")

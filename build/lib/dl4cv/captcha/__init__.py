"""Ch 21, breaking captchas: draw or download captchas, split them into digits, label the
digits (by hand in a browser, or from known text), train LeNet on them, solve new captchas."""

from __future__ import annotations

from dl4cv.config import Captcha, ConfigError, Params


def settings(params: Params) -> Captcha:
    """The captcha: section of params.yaml, or a ConfigError saying it is missing."""
    if params.captcha is None:
        raise ConfigError("params.yaml has no captcha: section (ch 21's settings)")
    return params.captcha

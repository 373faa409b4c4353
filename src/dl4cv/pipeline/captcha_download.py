"""captcha_download: fill data/raw/captcha/ with the captchas of the ch 21 case study."""

from __future__ import annotations

import logging
import sys

from dl4cv.captcha import settings
from dl4cv.captcha.download import fetch_captchas
from dl4cv.config import CAPTCHA, Params
from dl4cv.data.sources import Fetched
from dl4cv.runtime.paths import raw_dir

log = logging.getLogger(__name__)


def run(params: Params) -> Fetched:
    """Draw (generator) or download (http) the captchas into data/raw/captcha/; resumes."""
    spec = settings(params)
    source = spec.source
    fetched = fetch_captchas(
        source, raw_dir(CAPTCHA), spec.segment.digits, progress=sys.stderr.isatty()
    )
    log.info(
        "%d captchas from %s (%s), manifest sha256 %s",
        source.count,
        fetched.origin,
        fetched.location,
        fetched.sha256,
    )
    return fetched

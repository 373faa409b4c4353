"""Shared entry point of the stage scripts: logging, params, and clear errors without tracebacks."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from dl4cv.config import ConfigError, load_params
from dl4cv.data.sources import DownloadError
from dl4cv.detection.video import VideoError


def main(stage: str, run: Callable[..., object], what: str | None = None) -> None:
    """Run `run(<id>, params)` for the id given on the command line, or `run(params)` when the
    stage works on the whole project (`what` is None: it takes no argument, e.g. `report`)."""
    parser = argparse.ArgumentParser(prog=f"stages/{stage}.py", description=run.__doc__)
    if what is not None:
        parser.add_argument(what, help=f"the {what} id, a key of params.yaml")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format=f"[{stage}] %(levelname)s %(message)s")
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        params = load_params()
        if what is None:
            run(params)
        else:
            run(getattr(args, what), params)
    except (ConfigError, DownloadError, FileNotFoundError, VideoError) as exc:
        logging.getLogger(stage).error("%s", exc)
        sys.exit(1)

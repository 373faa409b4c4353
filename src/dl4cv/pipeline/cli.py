"""Shared entry point of the stage scripts: logging, params, and clear errors without tracebacks."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from dl4cv.config import ConfigError, Params, load_params
from dl4cv.data.sources import DownloadError


def main(stage: str, run: Callable[[str, Params], object], what: str) -> None:
    parser = argparse.ArgumentParser(prog=f"stages/{stage}.py", description=run.__doc__)
    parser.add_argument(what, help=f"the {what} id, a key of params.yaml")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format=f"[{stage}] %(levelname)s %(message)s")
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        run(getattr(args, what), load_params())
    except (ConfigError, DownloadError, FileNotFoundError) as exc:
        logging.getLogger(stage).error("%s", exc)
        sys.exit(1)

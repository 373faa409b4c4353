"""Shared entry point of the stage scripts: warm start, logging, params, and clear errors
without tracebacks."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from dl4cv import warmstart


def main(stage: str, target: str, what: str | None = None, many: bool = False) -> None:
    """Run `run(<id>, params)` for the id given on the command line (`run([<id>...], params)`
    with `many`), or `run(params)` when the stage works on the whole project (`what` is None: it
    takes no argument, e.g. `report`).

    `target` is `module:function`; it is imported only after the warm server had its chance
    to take the stage, so a stage handed on pays no import here."""
    warmstart.hand_over()
    module, _, function = target.partition(":")
    run = getattr(importlib.import_module(module), function or "run")
    parser = argparse.ArgumentParser(prog=f"stages/{stage}.py", description=run.__doc__)
    if what is not None:
        parser.add_argument(
            what, nargs="+" if many else None, help=f"the {what} id, a key of params.yaml"
        )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format=f"[{stage}] %(levelname)s %(message)s")
    logging.getLogger("absl").setLevel(logging.ERROR)
    from dl4cv.config import ConfigError, load_params
    from dl4cv.data.sources import DownloadError
    from dl4cv.data.waiting import DataWaiting
    from dl4cv.detection.video import VideoError

    try:
        params = load_params()
        if what is None:
            run(params)
        else:
            run(getattr(args, what), params)
    # DataWaiting reaches here only from a stage that cannot wait (the others write placeholders).
    except (ConfigError, DataWaiting, DownloadError, FileNotFoundError, VideoError) as exc:
        logging.getLogger(stage).error("%s", exc)
        sys.exit(1)

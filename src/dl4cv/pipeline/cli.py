"""Shared entry point of the stage scripts: warm start, logging, params, and clear errors
without tracebacks.

Bad input ends a stage with one line that names the file or key and what was expected, and
exit status 1: an `InputError` (raised where the file or key is known, with its message), a
missing file, or an OS error on a named file (unreadable, a folder where a file should be).
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys

from dl4cv.runtime import warmstart
from dl4cv.runtime.errors import InputError


def main(stage: str, target: str, what: str | None = None, many: bool = False) -> None:
    """Run `run(<id>, params)` for the id given on the command line (`run([<id>...], params)`
    with `many`), or `run(params)` when the stage works on the whole project (`what` is None: it
    takes no argument, e.g. `report`).

    `target` is `module:function`; it is imported only after the warm server had its chance
    to take the stage, so a stage handed on pays no import here."""
    warmstart.hand_over()
    from dl4cv.config import load_params

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
    try:
        params = load_params()
        if what is None:
            run(params)
        else:
            run(getattr(args, what), params)
    except (InputError, FileNotFoundError) as exc:
        _fail(stage, str(exc))
    except OSError as exc:
        if exc.filename is None:  # not about a file: a socket, the device... not bad input
            raise
        _fail(stage, f"{exc.filename}: {exc.strerror or exc}")


def _fail(stage: str, message: str) -> None:
    # One line whatever the message quotes (a YAML snippet, a server's answer).
    logging.getLogger(stage).error("%s", re.sub(r"\s*\n\s*", " ", message.strip()))
    sys.exit(1)

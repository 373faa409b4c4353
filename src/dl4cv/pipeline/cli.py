"""Shared entry point of the stage scripts: logging, params, and clear errors without tracebacks.

Bad input ends a stage with one line that names the file or key and what was expected, and
exit status 1: an `InputError` (raised where the file or key is known, with its message), a
missing file, or an OS error on a named file (unreadable, a folder where a file should be).
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable

from dl4cv.config import load_params
from dl4cv.errors import InputError


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

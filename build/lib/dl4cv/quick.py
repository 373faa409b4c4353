"""`make quick`: the whole pipeline under `profile: quick`, leaving params.yaml as it was.

`dvc exp run -S profile=quick` writes `profile: quick` into params.yaml and leaves it there, so
the next `dvc repro` would quietly run the quick profile again. This runs it, then puts back the
file's exact bytes (the user's own uncommitted edits included) however the run ends. The results
stay in the workspace (models/, reports/, MLflow runs); the next `dvc repro` sees `profile` back
at its old value and reruns what depends on it.

    python -m dl4cv.quick [more `dvc exp run` arguments, e.g. a stage name]
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from dl4cv.config import PARAMS_FILE
from dl4cv.fileio import atomic_path

QUICK = ("exp", "run", "--set-param", "profile=quick")


def run_restoring(path: Path, command: Sequence[str]) -> int:
    """Run `command`, put `path` back to its bytes from before, and return the exit status
    (128 + N when a signal N ended the command, as a shell reports it).

    While the command runs, Ctrl-C (SIGINT) and a closed terminal (SIGHUP) reach its process
    group from the terminal itself, so here they only mean: wait for it to stop. SIGTERM, sent
    to this process alone, is passed on to the command."""
    saved = path.read_bytes()
    child: list[subprocess.Popen] = []

    def pass_on(signum: int, _frame: object) -> None:
        for proc in child:
            proc.send_signal(signum)

    def wait(_signum: int, _frame: object) -> None:
        pass

    handlers = {signal.SIGINT: wait, signal.SIGHUP: wait, signal.SIGTERM: pass_on}
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        child.append(subprocess.Popen(command))
        code = child[0].wait()
        return code if code >= 0 else 128 - code
    finally:
        if not path.exists() or path.read_bytes() != saved:
            with atomic_path(path) as tmp:
                tmp.write_bytes(saved)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main() -> int:
    return run_restoring(Path(PARAMS_FILE), [sys.executable, "-m", "dvc", *QUICK, *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())

"""`make quick`: the whole pipeline under `profile: quick`, leaving params.yaml as it was.

`profile: quick` is written into params.yaml as `dvc exp run -S profile=quick` writes it, the
pipeline runs (`dvc repro`; with `--jobs N` above 1, `make quick JOBS=N`, `python -m
dl4cv.parallel --jobs N`, N stages at a time), `dvc exp save` records the result as the
experiment `dvc exp run` would have made, and then the file's exact bytes are put back (the
user's own uncommitted edits included) however the run ends. The results stay in the workspace
(models/, reports/, MLflow runs); the next `dvc repro` sees `profile` back at its old value and
reruns what depends on it.

    python -m dl4cv.quick [--jobs N] [more `dvc repro` arguments, e.g. a stage name]

Not `dvc exp run -S profile=quick` itself: before it runs anything, its executor checks out
every declared output, and in a fresh clone (no dvc.lock, empty cache) it printed one
"No file hash info found ... It won't be created" warning per output, 161 in all."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from dl4cv.config import PARAMS_FILE
from dl4cv.runtime.fileio import atomic_path


def run_restoring(
    path: Path, *commands: Sequence[str], before: Callable[[], None] | None = None
) -> int:
    """Call `before`, run `commands` one after another until one fails, put `path` back to its
    bytes from before, and return the last exit status (128 + N when a signal N ended the
    command, as a shell reports it).

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
        if before is not None:
            before()
        code = 0
        for command in commands:
            child[:] = [subprocess.Popen(command)]
            code = child[0].wait()
            if code != 0:
                break
        return code if code >= 0 else 128 - code
    finally:
        if not path.exists() or path.read_bytes() != saved:
            with atomic_path(path) as tmp:
                tmp.write_bytes(saved)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def set_quick_profile(path: Path) -> None:
    """`profile: quick` in params.yaml, written as `dvc exp run -S profile=quick` writes it
    (ruamel's round trip, as DVC's, keeps the comments)."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    data = yaml.load(path.read_text())
    data["profile"] = "quick"
    with atomic_path(path) as tmp, tmp.open("w") as out:
        yaml.dump(data, out)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    jobs = "1"
    if argv[:1] in (["--jobs"], ["-j"]) and len(argv) > 1:
        jobs, argv = argv[1], argv[2:]
    path = Path(PARAMS_FILE)
    if jobs == "1" and "--scheduler" not in argv:
        pipeline = [sys.executable, "-m", "dvc", "repro", *argv]
    else:
        pipeline = [sys.executable, "-m", "dl4cv.parallel", "--jobs", jobs, *argv]
    save = [sys.executable, "-m", "dvc", "exp", "save", "--quiet"]
    return run_restoring(path, pipeline, save, before=lambda: set_quick_profile(path))


if __name__ == "__main__":
    sys.exit(main())

"""`python -m dl4cv.tracking sync`: send the MLflow records the store could not take when
their stages ran; `python -m dl4cv.tracking pending`: list them.

Run it in the repository (its `mlflow-journal/`), with the MLFLOW_TRACKING_URI of the stages.
Each record is sent once: running it again sends nothing new. Exit 1 if any is left.
"""

from __future__ import annotations

import argparse
import logging
import sys

from dl4cv import tracking
from dl4cv.tracking.journal import JOURNAL_DIR
from dl4cv.tracking.sender import SendError, send


def sync() -> int:
    waiting = tracking.pending()
    if not waiting:
        print(f"nothing to send to {tracking.tracking_uri()}")
        return 0
    for done, entry in enumerate(waiting):
        if not entry.acquire():  # a stage took it up meanwhile (a resumed training)
            continue
        try:
            send(entry)
        except SendError as exc:
            entry.release()
            print(
                f"dl4cv.tracking sync: {tracking.tracking_uri()}: {exc}; "
                f"{len(waiting) - done} record(s) still in {JOURNAL_DIR}/",
                file=sys.stderr,
            )
            return 1
        run_id = entry.progress.run_id
        print(f"sent {entry.start()['name']} -> run {run_id}")
        entry.remove()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dl4cv.tracking", description=__doc__)
    parser.add_argument("command", choices=["sync", "pending"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.command == "pending":
        for entry in tracking.pending():
            print(entry.describe())
        return 0
    return sync()


if __name__ == "__main__":
    sys.exit(main())

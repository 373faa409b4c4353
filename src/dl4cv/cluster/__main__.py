"""`python -m dl4cv.cluster --scheduler ADDRESS -S KEY=V1,V2 ...`: a sweep on a Dask cluster.

    python -m dl4cv.cluster --scheduler tcp://host:8786 \\
        -S experiments.lenet_mnist.optimizer.learning_rate=0.005,0.01,0.02

One DVC experiment per combination of the `-S` values (DVC's own syntax), each run by a Dask
worker in a clone of the Git remote at this commit (dl4cv.cluster.task), pushed to the Git and
DVC remotes, then pulled here: `dvc exp show` lists them, the MLflow server holds their runs.
Exit 1 if any failed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dl4cv.cluster.submit import ClusterError, run
from dl4cv.cluster.sweep import SweepError, grid


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dl4cv.cluster", description=__doc__)
    parser.add_argument("--scheduler", required=True, help="the Dask scheduler, tcp://host:8786")
    parser.add_argument(
        "-S", "--set-param", dest="settings", action="append", default=[],
        help="KEY=VALUE or KEY=V1,V2,... (dvc exp run -S); repeat for a grid",
    )  # fmt: skip
    parser.add_argument("--git-remote", default="origin", help="where workers clone from")
    parser.add_argument("--name", default="sweep", help="experiment names: NAME-<hash>")
    args = parser.parse_args(argv)
    try:
        run(grid(args.settings, args.name), args.scheduler, args.git_remote)
    except (ClusterError, SweepError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

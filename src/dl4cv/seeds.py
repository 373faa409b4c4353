"""`make seeds`: the whole pipeline for several seeds, as DVC experiments, judged as a spread.

    python -m dl4cv.seeds [--seeds 3] [--start 42] [--jobs 1] [--profile book] [-S key=value]
    python -m dl4cv.seeds --report-only

Queues one `dvc exp run --queue -S seed=<s> -n seed-<s>` per seed (42, 43, 44 by default: the
pipeline's own seed first), starts `dvc queue start -j <jobs>` workers (each experiment runs
in its own copy under .dvc/tmp/exps; all log into the repository's MLflow store), waits,
printing each change of the queue, and exits 1 if a seed failed. Then it writes the spread of
every book figure over every seed the store holds (seed_report) to reports/seeds.md,
seeds.html, seeds.json and seeds/<id>.png; `--report-only` writes just that.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from dl4cv import seed_report, seed_runs, tracking
from dl4cv.config import ConfigError
from dl4cv.paths import REPORTS

PROFILES = ("book", "quick")
FIRST_SEED = 42
POLL_SECONDS = 5.0
# A row of `dvc queue status`: Task  Name  Created  Status
STATUS_ROW = re.compile(r"^\S+\s+(\S+)\s.*\b(Queued|Running|Success|Failed)\s*$", re.M)
DONE = ("Success", "Failed")


class SeedsError(Exception):
    """Bad input or a failed seed: one line for the user."""


def names(seeds: Sequence[int]) -> list[str]:
    return [f"seed-{s}" for s in seeds]


def dvc(*args: str, check: bool = True) -> str:
    """Run `dvc` with this interpreter; a failure raises SeedsError with its last line."""
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        raise SeedsError(f"dvc {' '.join(args)} failed: {lines[-1]}")
    return result.stdout


def queue(seeds: Sequence[int], profile: str, extra: Sequence[str]) -> None:
    """One queued experiment per seed; none if any name is taken for this commit."""
    taken = set(dvc("exp", "list", "--name-only").split())
    clash = [n for n in names(seeds) if n in taken]
    if clash:
        raise SeedsError(
            f"{', '.join(clash)} already exist for this commit: "
            f"dvc exp remove {' '.join(clash)}, or pick other seeds (--start)"
        )
    sets = [a for kv in [f"profile={profile}", *extra] for a in ("-S", kv)]
    for seed, name in zip(seeds, names(seeds), strict=True):
        dvc("exp", "run", "--queue", *sets, "-S", f"seed={seed}", "-n", name)


def statuses(wanted: Sequence[str]) -> dict[str, str]:
    """The queue status of each of `wanted` that `dvc queue status` lists."""
    found = dict(STATUS_ROW.findall(dvc("queue", "status")))
    return {name: found[name] for name in wanted if name in found}


def wait(wanted: Sequence[str], poll: float = POLL_SECONDS) -> dict[str, str]:
    """Poll the queue until every one of `wanted` has ended; print each change."""
    started, last = time.monotonic(), ""
    while True:
        now = statuses(wanted)
        counts = {s: sum(v == s for v in now.values()) for s in ("Queued", "Running", *DONE)}
        line = ", ".join(f"{n} {s.lower()}" for s, n in counts.items())
        if line != last:
            print(f"seeds: {line} ({time.monotonic() - started:.0f} s)", flush=True)
            last = line
        if len(now) == len(wanted) and all(v in DONE for v in now.values()):
            return now
        time.sleep(poll)


def write_report(out_dir: Path = REPORTS) -> list[Path]:
    from dl4cv.report import FIGURES_FILE, load_figures

    section = seed_report.build(load_figures(FIGURES_FILE), seed_runs.collect())
    return seed_report.write(section, out_dir)


def run(
    seeds: Sequence[int], jobs: int, profile: str, extra: Sequence[str], poll: float
) -> list[Path]:
    """Queue, run and wait for `seeds`; the spread report's paths."""
    queue(seeds, profile, extra)
    tracking.prepare()
    dvc("queue", "start", "-j", str(jobs))
    ended = wait(names(seeds), poll)
    failed = [name for name, status in ended.items() if status == "Failed"]
    if failed:
        raise SeedsError(f"{', '.join(failed)} failed: see dvc queue logs {failed[0]}")
    return write_report()


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dl4cv.seeds", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds (default 3)")
    parser.add_argument("--start", type=int, default=FIRST_SEED, help="the first seed (42)")
    parser.add_argument("--jobs", "-j", type=int, default=1, help="experiments at a time")
    parser.add_argument("--profile", default="book", help="book (default) or quick")
    more = "more params for every seed (dvc exp run -S)"
    parser.add_argument("-S", "--set-param", dest="extra", action="append", default=[], help=more)
    parser.add_argument("--report-only", action="store_true", help="write reports/seeds.* only")
    parser.add_argument("--poll", type=float, default=POLL_SECONDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seeds < 1:
        raise SeedsError(f"--seeds: expected at least 1, got {args.seeds}")
    if args.jobs < 1:
        raise SeedsError(f"--jobs: expected at least 1, got {args.jobs}")
    if args.profile not in PROFILES:
        raise SeedsError(f"--profile: expected one of {', '.join(PROFILES)}, got {args.profile!r}")
    bad = [kv for kv in args.extra if "=" not in kv or kv.split("=", 1)[0] in ("seed", "profile")]
    if bad:
        raise SeedsError(
            f"-S {bad[0]}: expected KEY=VALUE, not seed or profile (use --start, --profile)"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
        if args.report_only:
            paths = write_report()
        else:
            seeds = range(args.start, args.start + args.seeds)
            paths = run(seeds, args.jobs, args.profile, args.extra, args.poll)
    except (SeedsError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"seeds: spread written to {', '.join(str(p) for p in paths if p.suffix != '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

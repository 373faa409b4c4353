"""Seconds per stage of a timestamped `dvc repro` log (bench/gpu_book.sh), as a sorted table.

A stage runs from its "Running stage" line to the next one (the last one to the log's end), so
each figure includes the stage's own start-up and DVC's save and lock after it.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime
from pathlib import Path

STAGE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) Running stage '([^']+)'")
STAMP = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) ")


def seconds(stamp: str) -> float:
    t = datetime.strptime(stamp, "%H:%M:%S.%f")
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


def stage_times(lines: list[str]) -> list[tuple[str, float]]:
    starts = [(m.group(2), seconds(m.group(1))) for li in lines if (m := STAGE.match(li))]
    stamps = [seconds(m.group(1)) for li in lines if (m := STAMP.match(li))]
    if not starts:
        return []
    ends = [start for _, start in starts[1:]] + [stamps[-1]]
    return [(name, (end - start) % 86400) for (name, start), end in zip(starts, ends, strict=True)]


def main(path: str) -> None:
    times = stage_times(Path(path).read_text().splitlines())
    total = sum(t for _, t in times)
    print("| stage | seconds | share |\n|---|---|---|")
    for name, t in sorted(times, key=lambda item: -item[1]):
        print(f"| {name} | {t:.1f} | {t / total:.1%} |")
    print(f"| **all {len(times)} stages** | **{total:.1f}** | |")


if __name__ == "__main__":
    main(sys.argv[1])

"""The spread of one figure over seeds, and whether the book's figure lies inside it.

One run per figure lets chance decide a verdict (a last-epoch spike, an unlucky start), so the
report also asks: is the book's number one our seeds could have produced? The rule:

- fewer than WIDE_N seeds: the book's figure lies in [min - tolerance, max + tolerance] (too
  few values for a standard deviation to mean much; the figure's own tolerance widens them);
- WIDE_N seeds or more: the book's figure lies in mean ± 2 sd (sample sd, n - 1);
- a figure equal on every seed does not move with `seed` (the experiment fixes its own random
  state, as the book's code does): it is judged by its tolerance alone, as one run is;
- an `at_least` figure the whole spread beats, or an `at_most` one it stays under, is
  reproduced: the book's figure is a bar to clear, not a value to hit.

Pure arithmetic on numbers: which runs count is seeds.runs's job, the tables dl4cv.report.seeds's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

WIDE_N = 5  # from this many seeds on, mean ± 2 sd; below, the widened [min, max]
SDS = 2

WITHIN = "within spread"
BOOK_ABOVE = "outside spread (book above)"
BOOK_BELOW = "outside spread (book below)"
OURS_BETTER = "outside spread (ours better)"
COVERED = (WITHIN, OURS_BETTER)  # the verdicts that count as reproduced
NO_SEEDS = "no seeds"
RULE = (
    f"n < {WIDE_N}: the book's figure lies in [min − tolerance, max + tolerance]; "
    f"n ≥ {WIDE_N}: it lies in mean ± {SDS} sd (sample sd). A figure equal on every seed does "
    "not depend on the seed (the experiment fixes its own random state) and is judged by its "
    "tolerance alone. Where the book's figure is a bar (at least / at most), a spread entirely "
    "on the right side of it is reproduced: outside spread (ours better). Only book-profile "
    "pipeline runs, the newest per seed, count."
)

_EPSILON = 1e-9  # binary floating point: 0.52 - 0.02 must equal 0.5
ABSENT = object()


def lookup(metrics: dict, dotted: str) -> Any:
    """`per_class.panda.precision` -> metrics["per_class"]["panda"]["precision"], or ABSENT."""
    value: Any = metrics
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return ABSENT
        value = value[part]
    return value


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float))  # JSON true/false count as 1/0, as the book's flags


@dataclass
class Stats:
    n: int
    mean: float
    sd: float | None  # None for one value
    min: float
    max: float


def stats(values: list[float]) -> Stats:
    """Mean, sample standard deviation, min and max of at least one value."""
    n = len(values)
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return Stats(n, mean, sd, min(values), max(values))


def bounds(s: Stats, tolerance: float) -> tuple[float, float]:
    """The interval the book's figure must lie in, by RULE."""
    if s.n < WIDE_N or not s.sd:  # few seeds, or a figure the seed does not move
        return s.min - tolerance, s.max + tolerance
    return s.mean - SDS * s.sd, s.mean + SDS * s.sd


def seed_independent(s: Stats) -> bool:
    """Several seeds, one value: the figure's randomness is fixed by the experiment itself."""
    return s.n > 1 and s.min == s.max


def verdict(book: float, s: Stats, tolerance: float, compare: str = "equal") -> str:
    """Where the book's figure lies against the spread; `compare` as in book/figures.yaml."""
    low, high = bounds(s, tolerance)
    if book > high + _EPSILON:
        return OURS_BETTER if compare == "at_most" else BOOK_ABOVE
    if book < low - _EPSILON:
        return OURS_BETTER if compare == "at_least" else BOOK_BELOW
    return WITHIN

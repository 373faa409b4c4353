"""Each experiment's record judged against the book's figures: one `Row` per experiment.

Nothing a reader should see is dropped: an experiment the book has and we have not run shows
as `missing`, one whose stage waits for its dataset (the book's Animals, before a mirror has
them) as `waiting for data` with the command that provides it, a garbled record as
`unreadable`, a record the figures file does not know as `not comparable`, and a quick-profile
run is never counted as a reproduction.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dl4cv.data import waiting
from dl4cv.figures import BookEntry, Comparison
from dl4cv.seeds.spread import ABSENT, is_number, lookup
from dl4cv.tracking import run_record

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_COMPARABLE = "not comparable"
QUICK = "not comparable (quick profile)"
OUTSIDE = "not comparable (outside the pipeline)"  # a benchmark script's record
WAITING = waiting.STATUS  # its stage ran, but its dataset has no source yet
MISSING = "missing"
UNREADABLE = "unreadable"
VERDICTS = (
    REPRODUCED,
    NOT_REPRODUCED,
    NOT_COMPARABLE,
    QUICK,
    OUTSIDE,
    WAITING,
    MISSING,
    UNREADABLE,
)
STATE_VERDICTS = {"waiting": WAITING, "missing": MISSING, "unreadable": UNREADABLE}
NOT_RUN = "Not run: data missing"

# Slack for binary floating point: 0.52 - 0.05 is 0.47000000000000003, and 0.47 must pass.
_EPSILON = 1e-9


@dataclass
class ComparisonResult:
    metric: str
    compare: str
    tolerance: float
    book: float | str | None
    ours: Any  # the record's value; None when the record lacks it
    difference: float | None  # ours - book, when both are numbers
    verdict: str
    note: str = ""


@dataclass
class Row:
    """One experiment of the report: the book's side, our record, and the verdict."""

    id: str
    book_id: str
    chapter: int | None
    title: str
    book_figure: str
    data_note: str | None
    verdict: str
    reason: str  # why the verdict, when it is not plain from the comparisons
    profile: str | None
    wall_seconds: float | None
    mlflow_run_id: str | None
    comparisons: list[ComparisonResult]
    curves: str | None  # path of the record's curves.png, when it is a PNG
    dataset: str | None = None  # the dataset a waiting record waits for
    waiting: str | None = None  # what to run to provide it


@dataclass
class Record:
    state: Literal["ok", "waiting", "missing", "unreadable"]
    metrics: dict
    reason: str = ""


def read_record(folder: Path, exp_id: str) -> Record:
    """An experiment's metrics.json; never raises for a missing or garbled file."""
    path = folder / "metrics.json"
    if not path.is_file():
        return Record("missing", {}, f"no record: {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return Record("unreadable", {}, f"{path}: not readable as JSON ({exc})")
    if not isinstance(data, dict):
        return Record("unreadable", {}, f"{path}: expected a JSON object")
    if data.get("experiment", exp_id) != exp_id:
        return Record(
            "unreadable", {}, f"{path}: records experiment {data['experiment']!r}, not {exp_id!r}"
        )
    if data.get("status") == WAITING:
        return Record("waiting", data, f"its data is missing: {data.get('dataset')} has no source")
    if not isinstance(data.get("profile"), str):
        return Record(
            "unreadable", {}, f"{path}: no `profile`, so a book run cannot be told from a quick one"
        )
    return Record("ok", data)


def judge(comparison: Comparison, metrics: dict) -> ComparisonResult:
    """Apply one comparison's rule to a readable record."""
    ours = lookup(metrics, comparison.metric)
    book = comparison.book
    result = ComparisonResult(
        comparison.metric,
        comparison.compare,
        comparison.tolerance,
        book,
        None if ours is ABSENT else ours,
        None,
        NOT_COMPARABLE,
        comparison.note,
    )
    if ours is ABSENT:
        result.note = _join_notes(comparison.note, "the record has no such metric")
        return result
    if is_number(ours) and is_number(book) and math.isfinite(ours):
        result.difference = float(ours) - float(book)
    if comparison.compare == "info":
        return result
    if isinstance(book, str):
        result.verdict = REPRODUCED if ours == book else NOT_REPRODUCED
        return result
    if not is_number(ours):
        result.note = _join_notes(comparison.note, f"ours is not a number: {ours!r}")
        return result
    if not math.isfinite(ours):  # a diverged run (nan/inf) is not a reproduction
        result.verdict = NOT_REPRODUCED
        return result
    tol = comparison.tolerance + _EPSILON
    passed = {
        "at_least": ours >= book - tol,
        "at_most": ours <= book + tol,
        "equal": abs(ours - book) <= tol,
    }[comparison.compare]
    result.verdict = REPRODUCED if passed else NOT_REPRODUCED
    return result


def _verdict(results: list[ComparisonResult]) -> tuple[str, str]:
    """An experiment's verdict from its judged comparisons (info rows never count)."""
    judged = [r for r in results if r.compare != "info"]
    if not judged:
        return NOT_COMPARABLE, "the book gives no figure we can check"
    if any(r.verdict == NOT_REPRODUCED for r in judged):
        return NOT_REPRODUCED, ""
    unjudged = [r.metric for r in judged if r.verdict != REPRODUCED]
    if unjudged:
        return NOT_COMPARABLE, f"cannot compare {', '.join(unjudged)}"
    return REPRODUCED, ""


def _row_verdict(
    exp_id: str, entry: BookEntry | None, record: Record, results: list[ComparisonResult]
) -> tuple[str, str]:
    """The experiment's verdict and why. A record that cannot be judged as a whole (a quick
    run, a skipped stage) also marks its judged comparisons, so no line reads `reproduced`."""
    if record.state != "ok":
        return STATE_VERDICTS[record.state], record.reason
    metrics = record.metrics
    no_entry = f"no entry for {exp_id!r} in the book's figures file" if entry is None else ""
    if metrics.get("source", run_record.PIPELINE) != run_record.PIPELINE:
        # bench/gpu_records.py: a benchmark's numbers, no pipeline stage behind them
        verdict = OUTSIDE
        reason = f"written by {metrics['source']}, not a pipeline stage"
    elif metrics["profile"] != "book":
        # Small subsets and few epochs: the numbers say the code runs, not that it reproduces.
        verdict = QUICK if metrics["profile"] == "quick" else NOT_COMPARABLE
        reason = f"a {metrics['profile']}-profile record; only profile: book is compared"
    elif metrics.get("skipped") is True:
        verdict = NOT_COMPARABLE
        reason = f"its stage skipped it: {metrics.get('reason') or 'no reason given'}"
    elif entry is None:
        return NOT_COMPARABLE, no_entry
    else:
        return _verdict(results)
    for result in results:
        if result.compare != "info":
            result.verdict = verdict
    return verdict, _join_notes(reason, no_entry)


def make_row(
    exp_id: str, entry: BookEntry | None, folder: Path, declared_chapter: int | None = None
) -> Row:
    record = read_record(folder, exp_id)
    metrics = record.metrics
    results = []
    for comparison in entry.comparisons if entry else ():
        if record.state == "ok":
            results.append(judge(comparison, metrics))
        else:
            results.append(
                ComparisonResult(
                    comparison.metric,
                    comparison.compare,
                    comparison.tolerance,
                    comparison.book,
                    None,
                    None,
                    STATE_VERDICTS[record.state],
                    comparison.note,
                )
            )
    verdict, reason = _row_verdict(exp_id, entry, record, results)
    wall = metrics.get("train_seconds")
    if not is_number(wall):
        wall = metrics.get("wall_seconds")
    run_id = metrics.get("mlflow_run_id")
    chapter = entry.chapter if entry else (declared_chapter or metrics.get("chapter"))
    curves, curves_note = _curves(folder)
    if curves_note:
        reason = _join_notes(reason, curves_note)
    return Row(
        id=exp_id,
        book_id=entry.book_id if entry else exp_id,
        chapter=chapter if isinstance(chapter, int) and not isinstance(chapter, bool) else None,
        title=entry.title if entry else "",
        book_figure=entry.book_figure if entry else "",
        data_note=entry.data_note if entry else None,
        verdict=verdict,
        reason=reason,
        profile=metrics.get("profile") if isinstance(metrics.get("profile"), str) else None,
        wall_seconds=float(wall) if is_number(wall) else None,
        mlflow_run_id=run_id if isinstance(run_id, str) else None,
        comparisons=results,
        curves=curves,
        dataset=_text(metrics.get("dataset")) if record.state == "waiting" else None,
        waiting=_text(metrics.get(waiting.KEY)) if record.state == "waiting" else None,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _curves(folder: Path) -> tuple[str | None, str]:
    path = folder / "curves.png"
    if not path.is_file():
        return None, ""
    try:
        with path.open("rb") as f:
            head = f.read(len(PNG_MAGIC))
    except OSError as exc:
        return None, f"{path}: not readable ({exc}); left out of the HTML"
    if head != PNG_MAGIC:
        return None, f"{path}: not a PNG; left out of the HTML"
    return str(path), ""


def build_rows(
    figures: dict[str, BookEntry], experiments_dir: Path, declared: dict[str, int] | None = None
) -> list[Row]:
    """One row per experiment the book, params.yaml or a record knows, sorted by chapter
    (the figures file's order within a chapter, then records the file does not know)."""
    found = (
        {p.name for p in experiments_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
        if experiments_dir.is_dir()
        else set()
    )
    declared = declared or {}
    ids = list(figures) + sorted((found | set(declared)) - set(figures))
    order = {exp_id: i for i, exp_id in enumerate(ids)}
    rows = [
        make_row(exp_id, figures.get(exp_id), experiments_dir / exp_id, declared.get(exp_id))
        for exp_id in ids
    ]
    rows.sort(key=lambda r: (r.chapter is None, r.chapter or 0, order[r.id]))
    return rows


def summarize(rows: list[Row]) -> dict[str, list[str]]:
    """Experiment ids per verdict, every verdict present (possibly empty)."""
    groups: dict[str, list[str]] = {verdict: [] for verdict in VERDICTS}
    for row in rows:
        groups[row.verdict].append(row.id)
    return groups


def waiting_rows(rows: list[Row]) -> list[Row]:
    """The experiments whose stage waits for its data, in the report's order."""
    return [row for row in rows if row.verdict == WAITING]


def _join_notes(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def slug(verdict: str) -> str:
    """`not comparable (quick profile)` -> `not_comparable_quick_profile`."""
    return "_".join("".join(c if c.isalnum() else " " for c in verdict).split())

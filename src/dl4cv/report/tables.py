"""The report's table, cell by cell, and its notes: shared by the Markdown and the HTML."""

from __future__ import annotations

import math
from typing import Any

from dl4cv.report.verdicts import ComparisonResult, Row


def fmt_number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.2f}"
    if abs(value) < 0.001:  # the book's small losses and tolerances, without exponents
        return f"{value:.7f}".rstrip("0")
    return f"{value:.4g}"


def fmt_difference(value: float | None) -> str:
    """Signed, to 4 decimals below 1 (the book's figures have 2 to 4)."""
    if value is None:
        return "—"
    if value == 0:
        return "0"
    text = f"{value:.4f}" if 0.001 <= abs(value) < 1 else fmt_number(value)
    return text if text.startswith("-") else "+" + text


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def fmt_rule(result: ComparisonResult) -> str:
    tol = fmt_number(result.tolerance)
    if result.compare == "info":
        return "info"
    if result.compare == "at_least":
        return f"≥ book - {tol}"
    if result.compare == "at_most":
        return f"≤ book + {tol}"
    return "= book" if result.tolerance == 0 else f"= book ± {tol}"


COLUMNS = (
    "ch",
    "experiment",
    "metric",
    "book",
    "ours",
    "diff",
    "rule",
    "verdict",
    "wall",
    "profile",
    "MLflow run",
)


def table_cells(row: Row) -> list[list[str]]:
    """The table lines of one experiment: one per comparison (one line when it has none);
    the experiment's own cells (wall, profile, run) on its first line only."""
    experiment = row.id if row.book_id == row.id else f"{row.id} (book: {row.book_id})"
    chapter = str(row.chapter) if row.chapter is not None else "?"
    lines = []
    for result in row.comparisons or [None]:
        if result is None:
            cells = [row.book_figure or "—", "—", "—", "—", row.verdict]
            metric = "—"
        else:
            cells = [
                fmt_number(result.book),
                fmt_number(result.ours),
                fmt_difference(result.difference),
                fmt_rule(result),
                result.verdict if result.compare != "info" else "info",
            ]
            metric = result.metric
        lines.append([chapter, experiment, metric, *cells])
    lines[0] += [fmt_seconds(row.wall_seconds), row.profile or "—", row.mlflow_run_id or "—"]
    for line in lines[1:]:
        line += ["", "", ""]
    return lines


def notes(row: Row) -> list[tuple[str, str]]:
    notes = [("verdict", row.verdict + (f" — {row.reason}" if row.reason else ""))]
    if row.title:
        notes.append(("what", row.title))
    if row.book_id != row.id:
        notes.append(("book experiment", row.book_id))
    if row.book_figure:
        notes.append(("the book", row.book_figure))
    if row.data_note:
        notes.append(("data", row.data_note))
    notes += [(r.metric, r.note) for r in row.comparisons if r.note]
    return notes


def md(text: str) -> str:
    """One Markdown table cell: on one line, its pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")

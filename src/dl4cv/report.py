"""The reproduction report: every experiment's record set against the book's figures.

The book's figures live in a data file (`book/figures.yaml`: per pipeline id, what the book
reports and how to compare it); each experiment's record is `reports/experiments/<id>/
metrics.json`. The `report` stage joins the two into `reports/book.md`, a self-contained
`reports/book.html` (with each experiment's training curves) and `reports/book.json`, and
the headline numbers DVC declares as metrics, `reports/metrics/<id>.json`.

Nothing a reader should see is dropped: an experiment the book has and we have not run shows
as `missing`, one whose stage waits for its dataset (the book's Animals, before a mirror has
them) as `waiting for data` with the command that provides it, a garbled record as
`unreadable`, a record the figures file does not know as `not comparable`, and a quick-profile
run is never counted as a reproduction.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from dl4cv import tracking
from dl4cv.config import Params
from dl4cv.data import waiting
from dl4cv.figures import FIGURES_FILE, BookEntry, Comparison, load_figures
from dl4cv.fileio import write_json, write_text
from dl4cv.paths import REPORTS
from dl4cv.seeds import runs as seed_runs
from dl4cv.seeds.report import Section, html_section, markdown
from dl4cv.seeds.report import build as build_seeds
from dl4cv.seeds.report import to_json as seeds_json
from dl4cv.seeds.spread import ABSENT, is_number, lookup
from dl4cv.tracking import run_record
from dl4cv.tracking.sender import reason

log = logging.getLogger(__name__)

EXPERIMENTS_DIR = REPORTS / "experiments"
BOOK_MD = "book.md"
BOOK_HTML = "book.html"
BOOK_JSON = "book.json"
HEADLINES_DIR = REPORTS / "metrics"
# What `dvc exp show` lists of each record: a record's other keys (per class, timings, ids)
# made it 1,600 columns wide. Keyed by the id, so its columns read `<id>.accuracy`, not
# `reports/metrics/<id>.json:accuracy` (DVC prefixes the path to names that repeat).
HEADLINE = ("accuracy", "precision_weighted")
RUN_NAME = seed_runs.REPORT_RUN
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


# --- records and verdicts --------------------------------------------------------------------


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


# --- rendering -------------------------------------------------------------------------------


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


def _md(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


UNSENT = "MLflow records not sent yet"
UNSENT_INTRO = (
    "The tracking store could not take these when their stages ran; they wait in the "
    f"repository's journal. Send them with `{tracking.SYNC_COMMAND}`."
)


def render_markdown(
    rows: list[Row],
    profile: str,
    source: str,
    seeds: Section | None = None,
    unsent: Sequence[str] = (),
) -> str:
    groups = summarize(rows)
    out = [
        "# The book's figures, reproduced?",
        "",
        f"Written by the `report` stage (pipeline profile: {profile}) from `{source}` and "
        "every `reports/experiments/<id>/metrics.json`. One line per figure the book gives; "
        "`diff` is ours − book. An experiment is *reproduced* when every judged figure "
        "passes its rule on a book-profile run; `info` lines are shown, never judged.",
        "",
        "## Summary",
        "",
        "| verdict | experiments | ids |",
        "|---|---|---|",
    ]
    for verdict, ids in groups.items():
        out.append(f"| {verdict} | {len(ids)} | {', '.join(ids) or '—'} |")
    not_run = waiting_rows(rows)
    if not_run:
        out += ["", f"## {NOT_RUN}", "", NOT_RUN_INTRO, "", "| id | dataset | to provide it, run |"]
        out.append("|---|---|---|")
        for row in not_run:
            out.append(f"| {row.id} | {_md(row.dataset or '?')} | `{_md(row.waiting or '?')}` |")
    if unsent:
        out += ["", f"## {UNSENT}", "", UNSENT_INTRO, ""] + [f"- {_md(u)}" for u in unsent]
    out += ["", "## Results", ""]
    out.append("| " + " | ".join(COLUMNS) + " |")
    out.append("|" + "---|" * len(COLUMNS))
    for row in rows:
        for cells in table_cells(row):
            out.append("| " + " | ".join(_md(c) for c in cells) + " |")
    out += ["", "## Notes", ""]
    for row in rows:
        out += [f"### ch {row.chapter if row.chapter is not None else '?'} · {row.id}", ""]
        for label, text in _notes(row):
            out.append(f"- {label}: {_md(text)}")
        out.append("")
    if seeds is not None:
        out.append(markdown(seeds))
    return "\n".join(out)


NOT_RUN_INTRO = (
    "These stages ran but waited: their dataset has no public URL and no mirror lists it "
    "(`/path/to/<dataset>`: the folder or zip the book ships). Run the line shown; DVC then "
    "reruns exactly what waited."
)


def waiting_rows(rows: list[Row]) -> list[Row]:
    """The experiments whose stage waits for its data, in the report's order."""
    return [row for row in rows if row.verdict == WAITING]


def _notes(row: Row) -> list[tuple[str, str]]:
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


_HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.v-reproduced { background: #e3f6e3; }
.v-not-reproduced { background: #fbe3e3; }
.v-missing, .v-unreadable { background: #f0f0f0; color: #666; }
.v-waiting-for-data { background: #e6eefb; }
.v-not-comparable, .v-not-comparable-quick-profile, .v-info { background: #fdf6dd; }
figure { display: inline-block; margin: 0.5em; }
img { max-width: 640px; border: 1px solid #ddd; }
"""


def slug(verdict: str) -> str:
    """`not comparable (quick profile)` -> `not_comparable_quick_profile`."""
    return "_".join("".join(c if c.isalnum() else " " for c in verdict).split())


def _css_class(verdict: str) -> str:
    return "v-" + slug(verdict).replace("_", "-")


def render_html(
    rows: list[Row],
    profile: str,
    source: str,
    seeds: Section | None = None,
    unsent: Sequence[str] = (),
) -> str:
    """The same report as one self-contained page: curves inlined as base64 PNGs, and every
    piece of text escaped (notes and metric names come from files anyone can edit)."""
    e = html.escape
    groups = summarize(rows)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>The book's figures, reproduced?</title>",
        f"<style>{_HTML_STYLE}</style></head><body>",
        "<h1>The book's figures, reproduced?</h1>",
        f"<p>Written by the <code>report</code> stage (pipeline profile: {e(profile)}) from "
        f"<code>{e(source)}</code> and every <code>reports/experiments/&lt;id&gt;/metrics.json"
        "</code>. <code>diff</code> is ours − book. An experiment is <em>reproduced</em> when "
        "every judged figure passes its rule on a book-profile run; <code>info</code> lines are "
        "shown, never judged.</p>",
        "<h2>Summary</h2>",
        "<table><tr><th>verdict</th><th>experiments</th><th>ids</th></tr>",
    ]
    for verdict, ids in groups.items():
        out.append(
            f'<tr class="{_css_class(verdict)}"><td>{e(verdict)}</td><td>{len(ids)}</td>'
            f"<td>{e(', '.join(ids)) or '—'}</td></tr>"
        )
    out.append("</table>")
    not_run = waiting_rows(rows)
    if not_run:
        out += [
            f"<h2>{e(NOT_RUN)}</h2>",
            f"<p>{e(NOT_RUN_INTRO)}</p>",
            "<table><tr><th>id</th><th>dataset</th><th>to provide it, run</th></tr>",
        ]
        out += [
            f'<tr class="{_css_class(WAITING)}"><td>{e(row.id)}</td>'
            f"<td>{e(row.dataset or '?')}</td><td><code>{e(row.waiting or '?')}</code></td></tr>"
            for row in not_run
        ]
        out.append("</table>")
    if unsent:
        out += [f"<h2>{e(UNSENT)}</h2>", f"<p>{e(UNSENT_INTRO)}</p>", "<ul>"]
        out += [f"<li><code>{e(u)}</code></li>" for u in unsent]
        out.append("</ul>")
    out += ["<h2>Results</h2>", "<table>"]
    out.append("<tr>" + "".join(f"<th>{e(c)}</th>" for c in COLUMNS) + "</tr>")
    verdict_col = COLUMNS.index("verdict")
    for row in rows:
        for cells in table_cells(row):
            css = _css_class(cells[verdict_col])
            out.append(f'<tr class="{css}">' + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
    out += ["</table>", "<h2>Notes</h2>"]
    for row in rows:
        chapter = row.chapter if row.chapter is not None else "?"
        out.append(f'<h3 id="{e(row.id)}">ch {chapter} · {e(row.id)}</h3><ul>')
        out += [f"<li><b>{e(label)}</b>: {e(text)}</li>" for label, text in _notes(row)]
        out.append("</ul>")
        if row.curves:
            data = base64.b64encode(Path(row.curves).read_bytes()).decode("ascii")
            out.append(
                f'<figure><img alt="training curves of {e(row.id)}" '
                f'src="data:image/png;base64,{data}"><figcaption>{e(row.id)}: curves.png'
                "</figcaption></figure>"
            )
    if seeds is not None:
        out.append(html_section(seeds, seeds.plots(), {}))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def to_json(
    rows: list[Row],
    profile: str,
    source: str,
    seeds: Section | None = None,
    unsent: Sequence[str] = (),
) -> dict:
    def clean(value: Any) -> Any:  # strict JSON: no NaN/Infinity
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    groups = summarize(rows)
    return {
        "profile": profile,
        "figures": source,
        "summary": {verdict: len(ids) for verdict, ids in groups.items()},
        "not_run": [
            {"id": row.id, "dataset": row.dataset, "waiting": row.waiting}
            for row in waiting_rows(rows)
        ],
        "mlflow_unsent": list(unsent),
        "experiments": [clean(asdict(row)) for row in rows],
        **({"seeds": clean(seeds_json(seeds))} if seeds is not None else {}),
    }


def write_report(
    rows: list[Row],
    out_dir: Path,
    profile: str,
    source: str,
    seeds: Section | None = None,
    unsent: Sequence[str] = (),
) -> list[Path]:
    """Write book.md, book.html and book.json into out_dir, each atomically."""
    paths = [out_dir / BOOK_MD, out_dir / BOOK_HTML, out_dir / BOOK_JSON]
    write_text(paths[0], render_markdown(rows, profile, source, seeds, unsent) + "\n")
    write_text(paths[1], render_html(rows, profile, source, seeds, unsent))
    write_json(paths[2], to_json(rows, profile, source, seeds, unsent))
    return paths


def write_headlines(experiments_dir: Path, out_dir: Path) -> list[Path]:
    """`<out_dir>/<id>.json`, `{id: {HEADLINE numbers}}`, for every pipeline record that has
    one, so DVC's metrics are one small file per experiment; records stay whole in
    experiments_dir. A benchmark's record (bench/gpu_records.py) is no DVC metric."""
    shutil.rmtree(out_dir, ignore_errors=True)  # a record removed since leaves no file behind
    paths = []
    found = sorted(experiments_dir.iterdir()) if experiments_dir.is_dir() else []
    for folder in found:
        record = read_record(folder, folder.name)
        numbers = {k: record.metrics[k] for k in HEADLINE if is_number(record.metrics.get(k))}
        pipeline = record.metrics.get("source", run_record.PIPELINE) == run_record.PIPELINE
        if record.state == "ok" and numbers and pipeline:
            paths.append(out_dir / f"{folder.name}.json")
            write_json(paths[-1], {folder.name: numbers})
    return paths


def declared_chapters(params: Params) -> dict[str, int]:
    """Every id params.yaml declares with a chapter (experiments, exercises, predictions...),
    so a declared experiment that has neither a figure nor a record still shows."""
    declared = {}
    for section in fields(params):
        entries = getattr(params, section.name)
        if isinstance(entries, dict):
            declared |= {k: e.chapter for k, e in entries.items() if hasattr(e, "chapter")}
    return declared


def run(params: Params) -> dict[str, list[str]]:
    """Compare every experiment's record with the book's figures, and every figure with its
    spread over the seeds the MLflow store holds now; write reports/book.md, book.html and
    book.json, and reports/metrics/; log the report to the MLflow run `book-report`."""
    figures = load_figures(FIGURES_FILE)
    rows = build_rows(figures, EXPERIMENTS_DIR, declared_chapters(params))
    seeds = _seeds(figures)
    unsent = [entry.describe() for entry in tracking.pending()]
    if unsent:
        log.warning("%d %s; send them with: %s", len(unsent), UNSENT, tracking.SYNC_COMMAND)
    paths = write_report(rows, REPORTS, params.profile, str(FIGURES_FILE), seeds, unsent)
    write_headlines(EXPERIMENTS_DIR, HEADLINES_DIR)
    groups = summarize(rows)
    with run_record.record("report", RUN_NAME, params):
        tracking.log_params({"profile": params.profile, "figures": str(FIGURES_FILE)})
        tracking.log_metrics({f"experiments_{slug(v)}": len(ids) for v, ids in groups.items()})
        for path in paths:
            tracking.log_artifact(path, run_record.REPORT)
    log.info(
        "%d experiments: %s",
        len(rows),
        ", ".join(f"{len(ids)} {verdict}" for verdict, ids in groups.items() if ids),
    )
    return groups


def _seeds(figures: dict[str, BookEntry]) -> Section | None:
    """The spread over the seeds the store holds; None, said once, while it cannot be read."""
    from mlflow.exceptions import MlflowException

    try:
        return build_seeds(figures, seed_runs.collect())
    except (MlflowException, OSError) as exc:
        log.warning(
            "seed spread left out: the MLflow store %s cannot be read (%s)",
            tracking.tracking_uri(),
            reason(exc),
        )
        return None


def _join_notes(*notes: str) -> str:
    return "; ".join(n for n in notes if n)

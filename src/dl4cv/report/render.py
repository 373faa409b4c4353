"""The report as reports/book.md, book.html (a Jinja2 template, curves inlined) and
book.json, from the rows of `verdicts`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dl4cv import tracking
from dl4cv.report import html
from dl4cv.report.seeds import Section, html_context, markdown
from dl4cv.report.seeds import to_json as seeds_json
from dl4cv.report.tables import COLUMNS, md, notes, table_cells
from dl4cv.report.verdicts import NOT_RUN, Row, summarize, waiting_rows
from dl4cv.runtime.fileio import write_json, write_text

BOOK_MD = "book.md"
BOOK_HTML = "book.html"
BOOK_JSON = "book.json"
TITLE = "The book's figures, reproduced?"
UNSENT = "MLflow records not sent yet"
UNSENT_INTRO = (
    "The tracking store could not take these when their stages ran; they wait in the "
    f"repository's journal. Send them with `{tracking.SYNC_COMMAND}`."
)
NOT_RUN_INTRO = (
    "These stages ran but waited: their dataset has no public URL and no mirror lists it "
    "(`/path/to/<dataset>`: the folder or zip the book ships). Run the line shown; DVC then "
    "reruns exactly what waited."
)


@dataclass(frozen=True)
class BookReport:
    """What reports/book.md, book.html and book.json show: the rows (one per experiment), the
    profile and figures file they were judged under, the spread over seeds when the store could
    be read, and the MLflow records still waiting to be sent."""

    rows: list[Row]
    profile: str
    source: str  # the figures file
    seeds: Section | None = None
    unsent: Sequence[str] = ()

    def write(self, out_dir: Path) -> list[Path]:
        """book.md, book.html and book.json in out_dir, each written atomically."""
        paths = [out_dir / BOOK_MD, out_dir / BOOK_HTML, out_dir / BOOK_JSON]
        write_text(paths[0], markdown_page(self) + "\n")
        write_text(paths[1], html_page(self))
        write_json(paths[2], json_data(self))
        return paths


def markdown_page(report: BookReport) -> str:
    rows, seeds = report.rows, report.seeds
    groups = summarize(rows)
    out = [
        f"# {TITLE}",
        "",
        f"Written by the `report` stage (pipeline profile: {report.profile}) from "
        f"`{report.source}` and "
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
            out.append(f"| {row.id} | {md(row.dataset or '?')} | `{md(row.waiting or '?')}` |")
    if report.unsent:
        out += ["", f"## {UNSENT}", "", UNSENT_INTRO, ""] + [f"- {md(u)}" for u in report.unsent]
    out += ["", "## Results", ""]
    out.append("| " + " | ".join(COLUMNS) + " |")
    out.append("|" + "---|" * len(COLUMNS))
    for row in rows:
        for cells in table_cells(row):
            out.append("| " + " | ".join(md(c) for c in cells) + " |")
    out += ["", "## Notes", ""]
    for row in rows:
        out += [f"### ch {row.chapter if row.chapter is not None else '?'} · {row.id}", ""]
        for label, text in notes(row):
            out.append(f"- {label}: {md(text)}")
        out.append("")
    if seeds is not None:
        out.append(markdown(seeds))
    return "\n".join(out)


def html_page(report: BookReport) -> str:
    """The same report as one self-contained page: curves inlined as base64 PNGs."""
    rows, seeds = report.rows, report.seeds
    return html.render(
        "book.html.j2",
        title=TITLE,
        profile=report.profile,
        source=report.source,
        groups=summarize(rows),
        not_run=waiting_rows(rows),
        not_run_title=NOT_RUN,
        not_run_intro=NOT_RUN_INTRO,
        unsent=report.unsent,
        unsent_title=UNSENT,
        unsent_intro=UNSENT_INTRO,
        columns=COLUMNS,
        verdict_column=COLUMNS.index("verdict"),
        lines=[cells for row in rows for cells in table_cells(row)],
        rows=rows,
        notes={row.id: notes(row) for row in rows},
        curves={row.id: Path(row.curves).read_bytes() for row in rows if row.curves},
        seeds=html_context(seeds, seeds.plots(), {}) if seeds is not None else None,
    )


def json_data(report: BookReport) -> dict:
    def clean(value: Any) -> Any:  # strict JSON: no NaN/Infinity
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    rows, seeds = report.rows, report.seeds
    groups = summarize(rows)
    return {
        "profile": report.profile,
        "figures": report.source,
        "summary": {verdict: len(ids) for verdict, ids in groups.items()},
        "not_run": [
            {"id": row.id, "dataset": row.dataset, "waiting": row.waiting}
            for row in waiting_rows(rows)
        ],
        "mlflow_unsent": list(report.unsent),
        "experiments": [clean(asdict(row)) for row in rows],
        **({"seeds": clean(seeds_json(seeds))} if seeds is not None else {}),
    }

"""The seeds part of the report: every judged book figure against its spread over the seeds the
MLflow store holds (seeds.runs), one validation-accuracy plot per Keras experiment, and the runs
from outside the pipeline listed apart.

The `report` stage puts this section in reports/book.md, book.html (plots inlined) and
book.json; `python -m dl4cv.seeds` writes it alone, once every seed has finished, as
reports/seeds.md, seeds.html, seeds.json and seeds/<id>.png.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dl4cv.data import waiting
from dl4cv.report import html
from dl4cv.report.tables import md
from dl4cv.runtime.fileio import atomic_path, write_json, write_text
from dl4cv.seeds import spread
from dl4cv.seeds.runs import SeedRun, SeedRuns

if TYPE_CHECKING:
    from dl4cv.figures import BookEntry

SEEDS_MD = "seeds.md"
SEEDS_HTML = "seeds.html"
SEEDS_JSON = "seeds.json"
PLOTS_DIR = "seeds"  # beside seeds.html: seeds/<id>.png
TITLE = "Spread over seeds"


@dataclass
class FigureSpread:
    """One judged figure of the book over the seeds found."""

    metric: str
    compare: str
    book: float
    tolerance: float
    seeds: list[str]  # those with a number for this metric, in order
    values: list[float]
    n: int
    mean: float | None
    sd: float | None
    min: float | None
    max: float | None
    low: float | None  # the interval the book's figure must lie in (spread.RULE)
    high: float | None
    verdict: str
    seed_independent: bool  # one value on every seed: the seed does not move this figure


@dataclass
class ExperimentSpread:
    id: str
    chapter: int
    seeds: list[str]
    run_ids: list[str]
    figures: list[FigureSpread]
    curves: dict[str, list[float]]  # seed -> validation accuracy per epoch (Keras only)
    book_line: tuple[str, float] | None  # the figure drawn across the curves


@dataclass
class Section:
    experiments: list[ExperimentSpread]
    outside: list[SeedRun]

    def plots(self) -> dict[str, bytes]:
        """A PNG per experiment with validation curves."""
        return {e.id: plot_png(e) for e in self.experiments if e.curves}


def build(figures: dict[str, BookEntry], runs: SeedRuns) -> Section:
    """The spread of every judged numeric figure of `figures` (in its order) over `runs`."""
    experiments = []
    for exp_id, entry in figures.items():
        counted = [r for r in runs.pipeline.get(exp_id, []) if _judgeable(r.record)]
        if not counted:
            continue
        judged = [c for c in entry.comparisons if c.compare != "info" and spread.is_number(c.book)]
        experiments.append(
            ExperimentSpread(
                id=exp_id,
                chapter=entry.chapter,
                seeds=[r.seed for r in counted],
                run_ids=[r.run_id for r in counted],
                figures=[
                    figure_spread(c.metric, c.compare, float(c.book), c.tolerance, counted)
                    for c in judged
                ],
                curves={r.seed: r.val_accuracy for r in counted if r.val_accuracy},
                book_line=_book_line(judged),
            )
        )
    return Section(experiments, runs.outside)


def _book_line(judged: list) -> tuple[str, float] | None:
    """The figure drawn across validation-accuracy curves: the book's accuracy where it gives
    one (a precision line over accuracy curves compares unlike things), else its first."""
    chosen = next((c for c in judged if c.metric == "accuracy"), judged[0] if judged else None)
    return (chosen.metric, float(chosen.book)) if chosen else None


def _judgeable(record: dict) -> bool:
    """A record with numbers: not a stage that waited for its data or skipped its work."""
    return record.get("status") != waiting.STATUS and record.get("skipped") is not True


def figure_spread(
    metric: str, compare: str, book: float, tolerance: float, runs: list[SeedRun]
) -> FigureSpread:
    pairs = [
        (r.seed, float(v))
        for r in runs
        if spread.is_number(v := spread.lookup(r.record, metric)) and math.isfinite(v)
    ]
    seeds, values = [s for s, _ in pairs], [v for _, v in pairs]
    if not values:
        return FigureSpread(
            metric, compare, book, tolerance, [], [], 0, *([None] * 6), spread.NO_SEEDS, False
        )
    s = spread.stats(values)
    low, high = spread.bounds(s, tolerance)
    return FigureSpread(
        metric,
        compare,
        book,
        tolerance,
        seeds,
        values,
        s.n,
        s.mean,
        s.sd,
        s.min,
        s.max,
        low,
        high,
        spread.verdict(book, s, tolerance, compare),
        spread.seed_independent(s),
    )


def plot_png(experiment: ExperimentSpread) -> bytes:
    """Each seed's validation accuracy per epoch, and the book's figure as a horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for seed, curve in experiment.curves.items():
        ax.plot(range(1, len(curve) + 1), curve, label=f"seed {seed}")
    if experiment.book_line is not None:
        metric, value = experiment.book_line
        ax.axhline(value, color="black", linestyle="--", label=f"book: {metric} {value:g}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"{experiment.id}: {len(experiment.curves)} seeds")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


# --- rendering -------------------------------------------------------------------------------

COLUMNS = ("ch", "experiment", "metric", "book", "n", "seeds", "mean ± sd", "min–max", "verdict")


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.4g}" if abs(value) >= 0.001 or value == 0 else f"{value:.2e}"


def table_cells(section: Section) -> list[list[str]]:
    rows = []
    for e in section.experiments:
        for f in e.figures or []:
            sd = f" ± {_num(f.sd)}" if f.sd is not None else ""
            if f.seed_independent:
                sd = " (same on every seed)"
            rows.append(
                [
                    str(e.chapter),
                    e.id,
                    f.metric,
                    _num(f.book),
                    str(f.n),
                    ", ".join(f.seeds) or "—",
                    f"{_num(f.mean)}{sd}",
                    f"{_num(f.min)}–{_num(f.max)}" if f.n else "—",
                    f.verdict,
                ]
            )
    return rows


OUTSIDE_COLUMNS = ("experiment", "seed", "profile", "source", "MLflow run")
OUTSIDE_INTRO = (
    "Runs in the MLflow store that no pipeline stage made (no `dl4cv.source = pipeline` tag: "
    "benchmark scripts, notebooks, runs from before the tag): shown, never counted."
)


def _outside_cells(run: SeedRun) -> list[str]:
    return [run.experiment, run.seed or "—", run.profile or "—", run.source or "—", run.run_id]


def markdown(section: Section, level: int = 2) -> str:
    h = "#" * level
    out = [f"{h} {TITLE}", "", f"Rule: {spread.RULE}", ""]
    cells = table_cells(section)
    if cells:
        out.append("| " + " | ".join(COLUMNS) + " |")
        out.append("|" + "---|" * len(COLUMNS))
        out += ["| " + " | ".join(md(c) for c in row) + " |" for row in cells]
    else:
        out.append("No book-profile pipeline run in the MLflow store yet.")
    if section.outside:
        out += ["", f"{h}# Runs outside the pipeline (not counted)", "", OUTSIDE_INTRO, ""]
        out.append("| " + " | ".join(OUTSIDE_COLUMNS) + " |")
        out.append("|" + "---|" * len(OUTSIDE_COLUMNS))
        out += ["| " + " | ".join(md(c) for c in _outside_cells(r)) + " |" for r in section.outside]
    return "\n".join(out)


def html_context(section: Section, plots: dict[str, bytes], links: dict[str, str]) -> dict:
    """What templates/seeds_section.html.j2 shows: plots inlined (self-contained), each
    linked to its file when `links` names one."""
    return {
        "title": TITLE,
        "rule": spread.RULE,
        "columns": COLUMNS,
        "lines": [
            ("v-reproduced" if row[-1] in spread.COVERED else "v-not-reproduced", row)
            for row in table_cells(section)
        ],
        "plots": plots,
        "links": links,
        "outside_intro": OUTSIDE_INTRO,
        "outside_columns": OUTSIDE_COLUMNS,
        "outside": [_outside_cells(run) for run in section.outside],
    }


def to_json(section: Section) -> dict:
    return {
        "rule": spread.RULE,
        "experiments": [
            {k: v for k, v in asdict(e).items() if k != "curves"} for e in section.experiments
        ],
        "outside_pipeline": [
            {k: v for k, v in asdict(r).items() if k not in ("record", "val_accuracy")}
            for r in section.outside
        ],
    }


def write(section: Section, out_dir: Path) -> list[Path]:
    """seeds.md, seeds.html, seeds.json and seeds/<id>.png in out_dir."""
    plots = section.plots()
    paths = []
    for exp_id, png in plots.items():
        path = out_dir / PLOTS_DIR / f"{exp_id}.png"
        with atomic_path(path, suffix=".png") as tmp:
            tmp.write_bytes(png)
        paths.append(path)
    links = {exp_id: f"{PLOTS_DIR}/{exp_id}.png" for exp_id in plots}
    page = html.render("seeds.html.j2", title=TITLE, seeds=html_context(section, plots, links))
    paths += [out_dir / SEEDS_MD, out_dir / SEEDS_HTML, out_dir / SEEDS_JSON]
    write_text(paths[-3], markdown(section, level=1) + "\n")
    write_text(paths[-2], page)
    write_json(paths[-1], to_json(section))
    return paths

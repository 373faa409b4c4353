"""The `report` stage: every experiment's record set against the book's figures.

The book's figures live in a data file (`book/figures.yaml`: per pipeline id, what the book
reports and how to compare it); each experiment's record is `reports/experiments/<id>/
metrics.json`. The stage joins the two into `reports/book.md`, a self-contained
`reports/book.html` (with each experiment's training curves) and `reports/book.json`, and
the headline numbers DVC declares as metrics, `reports/metrics/<id>.json`.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import fields
from pathlib import Path

from dl4cv import tracking
from dl4cv.config import Params
from dl4cv.figures import FIGURES_FILE, BookEntry, load_figures
from dl4cv.report.render import UNSENT, BookReport
from dl4cv.report.seeds import Section
from dl4cv.report.seeds import build as build_seeds
from dl4cv.report.verdicts import build_rows, read_record, slug, summarize
from dl4cv.runtime.fileio import write_json
from dl4cv.runtime.paths import REPORTS
from dl4cv.seeds import runs as seed_runs
from dl4cv.seeds.spread import is_number
from dl4cv.tracking import run_record
from dl4cv.tracking.sender import reason

log = logging.getLogger(__name__)

EXPERIMENTS_DIR = REPORTS / "experiments"
HEADLINES_DIR = REPORTS / "metrics"
# What `dvc exp show` lists of each record: a record's other keys (per class, timings, ids)
# made it 1,600 columns wide. Keyed by the id, so its columns read `<id>.accuracy`, not
# `reports/metrics/<id>.json:accuracy` (DVC prefixes the path to names that repeat).
HEADLINE = ("accuracy", "precision_weighted")
RUN_NAME = seed_runs.REPORT_RUN


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
    paths = BookReport(rows, params.profile, str(FIGURES_FILE), seeds, unsent).write(REPORTS)
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

"""The reproduction report: verdicts, differences and the written files, on fabricated records
in a temp folder (missing, garbled, quick-profile, under and within tolerance, info-only)."""

from __future__ import annotations

import base64
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from dl4cv import tracking
from dl4cv.config import ConfigError, load_params, parse_params
from dl4cv.report import book as report_stage
from dl4cv.report import render, verdicts
from tests.conftest import REPO, toy_params
from tests.test_tracking import dead_store

SCRIPT = "<script>alert('x')</script>"

FIGURES = {
    "experiments": {
        "within": {
            "book_id": "within",
            "chapter": 12,
            "title": "ShallowNet-like, within the tolerance",
            "book_figure": "0.71 weighted precision (val acc 0.6947)",
            "data_note": "re-encoded copy",
            "comparisons": [
                {
                    "metric": "precision_weighted",
                    "book": 0.71,
                    "compare": "at_least",
                    "tolerance": 0.02,
                },
                {"metric": "accuracy", "book": 0.6947, "compare": "at_least", "tolerance": 0.02},
                {"metric": "seconds_per_epoch", "book": 5, "compare": "info"},
            ],
        },
        "under": {
            "book_id": "under",
            "chapter": 15,
            "title": "MiniVGGNet-like, under the tolerance",
            "book_figure": "0.83",
            "comparisons": [
                {
                    "metric": "precision_weighted",
                    "book": 0.83,
                    "compare": "at_least",
                    "tolerance": 0.02,
                },
                {"metric": "accuracy", "book": 0.8236, "compare": "at_least", "tolerance": 0.02},
            ],
        },
        "quick_run": {
            "book_id": "quick_run",
            "chapter": 14,
            "title": "a quick-profile record that would pass",
            "book_figure": "0.98",
            "comparisons": [
                {
                    "metric": "precision_weighted",
                    "book": 0.98,
                    "compare": "at_least",
                    "tolerance": 0.02,
                },
            ],
        },
        "absent": {
            "book_id": "absent_book",
            "chapter": 7,
            "title": "never run",
            "book_figure": "0.52",
            "comparisons": [
                {
                    "metric": "precision_weighted",
                    "book": 0.52,
                    "compare": "at_least",
                    "tolerance": 0.02,
                },
            ],
        },
        "garbled": {
            "book_id": "garbled",
            "chapter": 10,
            "title": "a record cut short",
            "book_figure": "0.92",
            "comparisons": [
                {"metric": "accuracy", "book": 0.916, "compare": "at_least", "tolerance": 0.02},
            ],
        },
        "info_only": {
            "book_id": "info_only",
            "chapter": 16,
            "title": "a reader's figure",
            "book_figure": "about 0.80",
            "comparisons": [
                {
                    "metric": "precision_weighted",
                    "book": 0.80,
                    "compare": "info",
                    "note": f"not the book's own figure {SCRIPT}",
                },
            ],
        },
        "exact": {
            "book_id": "exact",
            "chapter": 8,
            "title": "fixed numbers, nested keys, a loss, a label",
            "book_figure": "hinge 0 / 5.96, panda 0.79, loss 0.000245, says dog",
            "comparisons": [
                {"metric": "hinge.dog", "book": 0, "compare": "equal", "tolerance": 0.005},
                {"metric": "hinge.cat", "book": 5.96, "compare": "equal", "tolerance": 0.005},
                {
                    "metric": "per_class.panda.precision",
                    "book": 0.79,
                    "compare": "at_least",
                    "tolerance": 0.02,
                },
                {
                    "metric": "final_loss",
                    "book": 0.000245,
                    "compare": "at_most",
                    "tolerance": 0.001,
                },
                {"metric": "predicted", "book": "dog", "compare": "equal"},
                {"metric": "learned", "book": 0, "compare": "equal"},
            ],
        },
        "diverged": {
            "book_id": "diverged",
            "chapter": 9,
            "title": "nan loss",
            "book_figure": "loss 0.4479",
            "comparisons": [
                {"metric": "final_loss", "book": 0.4479, "compare": "at_most", "tolerance": 0.5},
            ],
        },
        "skipped_stage": {
            "book_id": "skipped_stage",
            "chapter": 20,
            "title": "a stage that wrote a record saying it did not run",
            "book_figure": "top-5 labels",
            "comparisons": [
                {"metric": "images", "book": 2, "compare": "at_least", "tolerance": 0},
            ],
        },
        "lacking": {
            "book_id": "lacking",
            "chapter": 18,
            "title": "a record without the compared metric",
            "book_figure": "val_loss 0.5511",
            "comparisons": [
                {
                    "metric": "best_val_loss",
                    "book": 0.5511,
                    "compare": "at_most",
                    "tolerance": 0.03,
                },
            ],
        },
    }
}


def record(exp_id: str, profile: str = "book", **numbers) -> dict:
    return {
        "experiment": exp_id,
        "chapter": 1,
        "profile": profile,
        "mlflow_run_id": f"run-{exp_id}",
        **numbers,
    }


def png_bytes() -> bytes:
    image = np.zeros((20, 30, 3), np.uint8)
    image[5:15, 5:25] = (0, 128, 255)
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def write_records(experiments: Path) -> bytes:
    """The fabricated records; returns the bytes of the one real curves.png."""

    def put(exp_id: str, data: dict | str) -> Path:
        folder = experiments / exp_id
        folder.mkdir(parents=True, exist_ok=True)
        text = data if isinstance(data, str) else json.dumps(data)
        (folder / "metrics.json").write_text(text)
        return folder

    png = png_bytes()
    folder = put(
        "within",
        record(
            "within",
            precision_weighted=0.697,
            accuracy=0.6907,
            seconds_per_epoch=1.18,
            train_seconds=119.6,
        ),
    )
    (folder / "curves.png").write_bytes(png)
    folder = put("under", record("under", precision_weighted=0.801, accuracy=0.8018))
    (folder / "curves.png").write_bytes(b"GIF89a not a png")
    put("quick_run", record("quick_run", "quick", precision_weighted=0.99, wall_seconds=12.5))
    put("garbled", '{"experiment": "garbled", "accuracy": 0.9')  # cut short mid-write
    put("info_only", record("info_only", precision_weighted=0.8123))
    put(
        "exact",
        record(
            "exact",
            hinge={"dog": 0.0, "cat": 5.958},
            per_class={"panda": {"precision": 0.8198}},
            final_loss=0.0001,
            predicted="dog",
            learned=False,
        ),
    )
    put("diverged", record("diverged", final_loss=math.nan))
    put("lacking", record("lacking", accuracy=0.8))
    put(
        "skipped_stage", record("skipped_stage", skipped=True, reason="weights not found", images=0)
    )
    put("stray", record("stray", accuracy=0.5) | {"chapter": 99})
    # bench/gpu_records.py's kind: a benchmark's numbers, no pipeline stage, no MLflow run
    bench = {"source": "bench/gpu_cifar10.py (results.jsonl)", "mlflow_run_id": None}
    put("benched", record("benched", precision_weighted=0.99) | bench)
    return png


@pytest.fixture
def figures_file(tmp_path: Path) -> Path:
    path = tmp_path / "figures.yaml"
    path.write_text(yaml.safe_dump(FIGURES))
    return path


@pytest.fixture
def rows(tmp_path: Path, figures_file: Path) -> dict[str, verdicts.Row]:
    experiments = tmp_path / "experiments"
    write_records(experiments)
    built = verdicts.build_rows(
        report_stage.load_figures(figures_file), experiments, {"declared_only": 11}
    )
    return {row.id: row for row in built}


def comparison(row: verdicts.Row, metric: str) -> verdicts.ComparisonResult:
    return next(r for r in row.comparisons if r.metric == metric)


def test_verdicts(rows):
    assert {exp_id: row.verdict for exp_id, row in rows.items()} == {
        "within": verdicts.REPRODUCED,
        "under": verdicts.NOT_REPRODUCED,
        "quick_run": verdicts.QUICK,
        "absent": verdicts.MISSING,
        "garbled": verdicts.UNREADABLE,
        "info_only": verdicts.NOT_COMPARABLE,
        "exact": verdicts.REPRODUCED,
        "diverged": verdicts.NOT_REPRODUCED,
        "lacking": verdicts.NOT_COMPARABLE,
        "skipped_stage": verdicts.NOT_COMPARABLE,
        "stray": verdicts.NOT_COMPARABLE,
        "benched": verdicts.OUTSIDE,
        "declared_only": verdicts.MISSING,
    }
    assert "bench/gpu_cifar10.py" in rows["benched"].reason
    assert "metrics.json" in rows["garbled"].reason
    assert "best_val_loss" in rows["lacking"].reason
    assert "no entry" in rows["stray"].reason
    assert "quick" in rows["quick_run"].reason
    assert rows["skipped_stage"].reason == "its stage skipped it: weights not found"
    assert comparison(rows["skipped_stage"], "images").verdict == verdicts.NOT_COMPARABLE


def test_differences_and_comparison_verdicts(rows):
    within = rows["within"]
    assert comparison(within, "precision_weighted").difference == pytest.approx(-0.013)
    assert comparison(within, "accuracy").difference == pytest.approx(0.6907 - 0.6947)
    info = comparison(within, "seconds_per_epoch")
    assert (info.verdict, info.ours, info.difference) == (
        "not comparable",
        1.18,
        pytest.approx(-3.82),
    )
    under = comparison(rows["under"], "precision_weighted")
    assert (under.verdict, under.difference) == (verdicts.NOT_REPRODUCED, pytest.approx(-0.029))
    # 0.8018 is 0.0218 below 0.8236: just past the tolerance.
    assert comparison(rows["under"], "accuracy").verdict == verdicts.NOT_REPRODUCED
    # A quick record is never judged, but its numbers and difference are still shown.
    quick = comparison(rows["quick_run"], "precision_weighted")
    assert (quick.verdict, quick.difference) == (verdicts.QUICK, pytest.approx(0.01))
    exact = rows["exact"]
    assert [r.verdict for r in exact.comparisons] == [verdicts.REPRODUCED] * 6
    assert comparison(exact, "hinge.cat").difference == pytest.approx(-0.002)
    assert comparison(exact, "per_class.panda.precision").ours == 0.8198
    assert comparison(exact, "predicted").difference is None
    nan = comparison(rows["diverged"], "final_loss")
    assert (nan.verdict, nan.difference) == (verdicts.NOT_REPRODUCED, None)
    assert comparison(rows["garbled"], "accuracy").verdict == verdicts.UNREADABLE
    assert comparison(rows["absent"], "precision_weighted").verdict == verdicts.MISSING
    lacking = comparison(rows["lacking"], "best_val_loss")
    assert (lacking.ours, lacking.verdict) == (None, verdicts.NOT_COMPARABLE)
    assert "no such metric" in lacking.note


def test_row_fields(rows):
    within = rows["within"]
    assert (within.wall_seconds, within.profile, within.mlflow_run_id) == (
        119.6,
        "book",
        "run-within",
    )
    assert rows["quick_run"].wall_seconds == 12.5  # wall_seconds when there is no train time
    assert rows["stray"].chapter == 99  # the record's own chapter when the book has no entry
    assert rows["absent"].book_id == "absent_book"
    assert within.curves.endswith("curves.png")
    assert rows["under"].curves is None
    assert "not a PNG" in rows["under"].reason


def test_equal_tolerance_edges(figures_file):
    figures = report_stage.load_figures(figures_file)
    hinge = next(c for c in figures["exact"].comparisons if c.metric == "hinge.cat")
    assert verdicts.judge(hinge, {"hinge": {"cat": 5.965}}).verdict == verdicts.REPRODUCED
    assert verdicts.judge(hinge, {"hinge": {"cat": 5.966}}).verdict == verdicts.NOT_REPRODUCED
    assert verdicts.judge(hinge, {"hinge": {"cat": 5.954}}).verdict == verdicts.NOT_REPRODUCED
    # 0.52 - 0.05 is 0.47000000000000003 in binary floating point: 0.47 must still pass.
    edge = verdicts.Comparison(metric="accuracy", compare="at_least", book=0.52, tolerance=0.05)
    assert verdicts.judge(edge, {"accuracy": 0.47}).verdict == verdicts.REPRODUCED
    assert verdicts.judge(edge, {"accuracy": 0.4699}).verdict == verdicts.NOT_REPRODUCED
    headline = figures["under"].comparisons[0]
    assert verdicts.judge(headline, {"precision_weighted": 0.81}).verdict == verdicts.REPRODUCED
    assert (
        verdicts.judge(headline, {"precision_weighted": 0.8099}).verdict == verdicts.NOT_REPRODUCED
    )
    assert (
        verdicts.judge(headline, {"precision_weighted": "0.9"}).verdict == verdicts.NOT_COMPARABLE
    )


def test_markdown_table(rows):
    text = render.markdown_page(render.BookReport(list(rows.values()), "book", "book/figures.yaml"))
    lines = text.splitlines()
    assert (
        "| 12 | within | precision_weighted | 0.71 | 0.697 | -0.0130 | ≥ book - 0.02 | "
        "reproduced | 2 min 0 s | book | run-within |"
    ) in lines
    assert "| 12 | within | seconds_per_epoch | 5 | 1.18 | -3.82 | info | info |  |  |  |" in lines
    assert (
        "| 15 | under | precision_weighted | 0.83 | 0.801 | -0.0290 | ≥ book - 0.02 | "
        "not reproduced | — | book | run-under |"
    ) in lines
    assert (
        "| 7 | absent (book: absent_book) | precision_weighted | 0.52 | — | — | ≥ book - 0.02 | "
        "missing | — | — | — |"
    ) in lines
    assert (
        "| 14 | quick_run | precision_weighted | 0.98 | 0.99 | +0.0100 | ≥ book - 0.02 | "
        "not comparable (quick profile) | 12.5 s | quick | run-quick_run |"
    ) in lines
    assert "| 8 | exact | final_loss | 0.000245 | 0.0001 | -0.000145 | ≤ book + 0.001 |" in text
    assert "| 8 | exact | predicted | dog | dog | — | = book | reproduced |" in text
    assert "| reproduced | 2 | exact, within |" in lines
    assert "| missing | 2 | absent, declared_only |" in lines
    # Sorted by chapter: a declared id without figure or record takes its params chapter.
    results = lines[lines.index("## Results") + 4 : lines.index("## Notes") - 1]
    order = []
    for line in results:
        chapter, experiment = line.split(" | ")[:2]
        if not order or order[-1][1] != experiment.split(" ")[0]:
            order.append((chapter.lstrip("| "), experiment.split(" ")[0]))
    assert order == [
        ("1", "benched"),
        ("7", "absent"),
        ("8", "exact"),
        ("9", "diverged"),
        ("10", "garbled"),
        ("11", "declared_only"),
        ("12", "within"),
        ("14", "quick_run"),
        ("15", "under"),
        ("16", "info_only"),
        ("18", "lacking"),
        ("20", "skipped_stage"),
        ("99", "stray"),
    ]
    # The notes carry the data note and the comparison's note.
    assert "- data: re-encoded copy" in lines


def test_html_embeds_the_curves_and_escapes_text(rows, tmp_path):
    png = (tmp_path / "experiments" / "within" / "curves.png").read_bytes()
    page = render.html_page(render.BookReport(list(rows.values()), "book", "book/figures.yaml"))
    assert f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}" in page
    assert page.count("data:image/png;base64,") == 1  # the GIF posing as curves.png is left out
    assert SCRIPT not in page and "<script" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert 'class="v-not-reproduced"' in page and 'class="v-reproduced"' in page
    # Self-contained: nothing fetched from elsewhere.
    assert "http://" not in page and "https://" not in page and 'src="data:' in page


def test_run_writes_the_report_and_logs_it(in_tmp, mlflow_store, figures_file):
    (in_tmp / "book").mkdir()
    (in_tmp / "book" / "figures.yaml").write_text(figures_file.read_text())
    write_records(in_tmp / "reports" / "experiments")
    params = parse_params(
        toy_params({"declared_only": {"chapter": 3, "dataset": "toy", "model": {"name": "knn"}}})
    )
    groups = report_stage.run(params)
    assert groups[verdicts.MISSING] == ["declared_only", "absent"]  # chapter 3 before 7
    book = json.loads((in_tmp / "reports" / "book.json").read_text())  # strict JSON: no NaN
    assert book["summary"] == {
        verdicts.REPRODUCED: 2,
        verdicts.NOT_REPRODUCED: 2,
        verdicts.NOT_COMPARABLE: 4,
        verdicts.QUICK: 1,
        verdicts.OUTSIDE: 1,
        verdicts.WAITING: 0,
        verdicts.MISSING: 2,
        verdicts.UNREADABLE: 1,
    }
    by_id = {row["id"]: row for row in book["experiments"]}
    assert (by_id["declared_only"]["chapter"], by_id["declared_only"]["verdict"]) == (3, "missing")
    assert by_id["diverged"]["comparisons"][0]["ours"] == "nan"
    assert by_id["under"]["comparisons"][0]["difference"] == pytest.approx(-0.029)
    md = (in_tmp / "reports" / "book.md").read_text()
    assert "| 15 | under | precision_weighted |" in md
    assert "data:image/png;base64," in (in_tmp / "reports" / "book.html").read_text()
    assert not list((in_tmp / "reports").glob(".book.*"))  # no temp files left behind

    client = MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT_NAME)
    (run,) = client.search_runs(
        [experiment.experiment_id], filter_string="attributes.run_name = 'book-report'"
    )
    assert run.data.metrics["experiments_reproduced"] == 2
    assert run.data.metrics["experiments_not_comparable_quick_profile"] == 1
    assert run.data.params["profile"] == "book"
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert logged == {"report/book.md", "report/book.html", "report/book.json"}


def test_with_the_store_down_the_report_lists_what_waits(in_tmp, figures_file, monkeypatch, caplog):
    """The tracking server is unreachable: the report is still written, without the seed spread
    (said once), and lists the MLflow records that wait in the journal for `sync`."""
    (in_tmp / "book").mkdir()
    (in_tmp / "book" / "figures.yaml").write_text(figures_file.read_text())
    write_records(in_tmp / "reports" / "experiments")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead_store())
    with tracking.run("lenet_mnist"):  # a training whose record the store could not take
        tracking.log_metrics({"val_accuracy": 0.9}, step=1)
    params = parse_params(toy_params({}))
    with caplog.at_level("WARNING"):
        report_stage.run(params)
    book = json.loads((in_tmp / "reports" / "book.json").read_text())
    assert [u.split()[0] for u in book["mlflow_unsent"]] == ["lenet_mnist"]
    assert "seeds" not in book
    md = (in_tmp / "reports" / "book.md").read_text()
    assert f"## {render.UNSENT}" in md and "python -m dl4cv.tracking sync" in md
    said = [r.getMessage() for r in caplog.records]
    assert sum("seed spread left out" in m for m in said) == 1, said


def test_headlines_are_the_only_numbers_dvc_sees(tmp_path):
    """reports/metrics/<id>.json: accuracy and weighted precision, nothing else (per class,
    timings, run ids stay in the record), one file per record that has them; a file of a
    record removed since goes."""
    experiments = tmp_path / "experiments"
    write_records(experiments)
    out = tmp_path / "metrics"
    out.mkdir()
    (out / "removed_since.json").write_text('{"accuracy": 1.0}')
    report_stage.write_headlines(experiments, out)
    written = {p.stem: json.loads(p.read_text()) for p in out.iterdir()}
    assert written == {
        exp_id: {exp_id: numbers}
        for exp_id, numbers in {
            "within": {"accuracy": 0.6907, "precision_weighted": 0.697},
            "under": {"accuracy": 0.8018, "precision_weighted": 0.801},
            "quick_run": {"precision_weighted": 0.99},
            "info_only": {"precision_weighted": 0.8123},
            "lacking": {"accuracy": 0.8},
            "stray": {"accuracy": 0.5},
        }.items()
    }


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda f: f["experiments"]["under"]["comparisons"][1].update(compare="bigger"),
            "experiments.under.comparisons[1].compare: expected one of "
            "['at_least', 'at_most', 'equal', 'info'], got 'bigger'",
        ),
        (
            lambda f: f["experiments"]["within"]["comparisons"][0].pop("book"),
            "experiments.within.comparisons[0].book: compare: at_least needs the book's value",
        ),
        (
            lambda f: f["experiments"]["within"]["comparisons"][0].update(book="0.71"),
            "experiments.within.comparisons[0].book: compare: at_least needs a number",
        ),
        (
            lambda f: f["experiments"]["exact"]["comparisons"][0].update(tolerance=-1),
            "experiments.exact.comparisons[0].tolerance: expected a number >= 0",
        ),
        (
            lambda f: f["experiments"]["exact"]["comparisons"][0].update(metric="hinge..dog"),
            "experiments.exact.comparisons[0].metric: expected a dotted path",
        ),
        (
            lambda f: f["experiments"]["absent"].update(chapter="seven"),
            "experiments.absent.chapter: expected an integer, got 'seven'",
        ),
        (
            lambda f: f["experiments"]["absent"].pop("book_id"),
            "experiments.absent.book_id: missing required key",
        ),
        (
            lambda f: f["experiments"]["absent"].update(figure="0.52"),
            "experiments.absent.figure: unknown key",
        ),
    ],
    ids=[
        "unknown rule",
        "no book value",
        "text for at_least",
        "negative tolerance",
        "empty path part",
        "chapter in words",
        "no book_id",
        "unknown key",
    ],
)
def test_a_bad_figures_file_names_the_file_the_id_and_the_key(tmp_path, change, expected):
    figures = json.loads(json.dumps(FIGURES))
    change(figures)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(figures))
    with pytest.raises(ConfigError) as info:
        report_stage.load_figures(path)
    assert str(info.value).startswith(f"{path}: {expected}")


def test_an_unreadable_figures_file(tmp_path):
    path = tmp_path / "figures.yaml"
    with pytest.raises(ConfigError, match="figures.yaml: not found"):
        report_stage.load_figures(path)
    path.write_text("experiments: [unclosed\n")
    with pytest.raises(ConfigError, match="figures.yaml: not readable as YAML"):
        report_stage.load_figures(path)


def test_the_stage_fails_cleanly_on_a_bad_figures_file(in_tmp):
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(toy_params({})))
    (in_tmp / "book").mkdir()
    (in_tmp / "book" / "figures.yaml").write_text("experiments: {x: {chapter: 1}}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        [sys.executable, str(REPO / "stages" / "report.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    assert "book/figures.yaml: experiments.x.book_id: missing required key" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (in_tmp / "reports").exists()


def test_the_repository_figures_cover_every_declared_experiment():
    figures = report_stage.load_figures(REPO / report_stage.FIGURES_FILE)
    declared = report_stage.declared_chapters(load_params(REPO / "params.yaml"))
    assert declared, "params.yaml declares no experiment"
    assert sorted(set(declared) - set(figures)) == []
    for exp_id, chapter in declared.items():
        assert figures[exp_id].chapter == chapter, exp_id
    # Every chapter of the Starter Bundle's experiments (7-22) has at least one entry.
    assert {entry.chapter for entry in figures.values()} == set(range(7, 23))

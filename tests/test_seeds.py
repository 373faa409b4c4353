"""The spread over seeds: the rule with hand-computed numbers, and the seeds report read from a
real sqlite MLflow store holding pipeline runs (opened by run_record, as stages open them),
a benchmark's run, a quick run and a run of an older commit."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from dl4cv import tracking
from dl4cv.config import parse_params
from dl4cv.report import seeds as seed_report
from dl4cv.seeds import queue as seeds
from dl4cv.seeds import runs as seed_runs
from dl4cv.seeds import spread
from dl4cv.tracking import run_record
from tests.conftest import toy_params
from tests.dvc_repo import KNN_DIGITS, digits_params, make_repo, run, stages_of, warm_env

FIGURES = {
    "experiments": {
        "net": {
            "book_id": "net",
            "chapter": 12,
            "title": "a small network",
            "book_figure": "0.93 accuracy",
            "comparisons": [
                {"metric": "accuracy", "book": 0.93, "compare": "at_least", "tolerance": 0.02},
                {"metric": "precision_weighted", "book": 0.97, "compare": "at_least"},
                {"metric": "train_seconds", "book": 5, "compare": "info"},
                {"metric": "loss", "book": 0.4, "compare": "at_most", "tolerance": 0.0},
            ],
        }
    }
}


# --- the rule, numbers worked by hand ----------------------------------------------------------


def test_three_seeds_mean_sd_and_widened_range():
    s = spread.stats([0.90, 0.92, 0.94])
    # mean 2.76 / 3; sd = sqrt((0.02² + 0 + 0.02²) / 2) = 0.02
    assert (s.n, s.mean, s.sd, s.min, s.max) == (
        3,
        pytest.approx(0.92),
        pytest.approx(0.02),
        0.90,
        0.94,
    )
    assert spread.bounds(s, 0.02) == (pytest.approx(0.88), pytest.approx(0.96))
    assert spread.verdict(0.96, s, 0.02) == spread.WITHIN  # on the widened edge
    assert spread.verdict(0.97, s, 0.02) == spread.BOOK_ABOVE
    assert spread.verdict(0.95, s, 0.0) == spread.BOOK_ABOVE  # no tolerance: [0.90, 0.94]
    assert spread.verdict(0.87, s, 0.02) == spread.BOOK_BELOW


def test_five_seeds_use_mean_plus_minus_two_sd_not_the_tolerance():
    s = spread.stats([1.0, 2.0, 3.0, 4.0, 5.0])
    # sd = sqrt((4 + 1 + 0 + 1 + 4) / 4) = sqrt(2.5) = 1.58114; 2 sd = 3.16228
    assert (s.mean, s.sd) == (3.0, pytest.approx(1.58114, abs=1e-5))
    assert spread.bounds(s, 10.0) == (
        pytest.approx(-0.16228, abs=1e-5),
        pytest.approx(6.16228, abs=1e-5),
    )
    assert spread.verdict(6.1, s, 10.0) == spread.WITHIN
    assert spread.verdict(6.2, s, 10.0) == spread.BOOK_ABOVE  # inside [min - 10, max + 10]


def test_a_bar_the_whole_spread_clears_is_reproduced_a_value_is_not():
    s = spread.stats([0.90, 0.92, 0.94])  # widened by 0.02: [0.88, 0.96]
    assert spread.verdict(0.85, s, 0.02, "at_least") == spread.OURS_BETTER
    assert spread.verdict(0.85, s, 0.02, "equal") == spread.BOOK_BELOW
    assert spread.verdict(0.85, s, 0.02, "at_most") == spread.BOOK_BELOW
    assert spread.verdict(0.97, s, 0.02, "at_least") == spread.BOOK_ABOVE
    assert spread.verdict(0.97, s, 0.02, "at_most") == spread.OURS_BETTER
    assert spread.OURS_BETTER in spread.COVERED and spread.BOOK_ABOVE not in spread.COVERED


def test_a_figure_the_seed_does_not_move_is_judged_by_its_tolerance():
    s = spread.stats([0.53] * 5)  # five seeds: mean ± 2 sd would be [0.53, 0.53]
    assert spread.seed_independent(s)
    assert spread.bounds(s, 0.02) == (pytest.approx(0.51), pytest.approx(0.55))
    assert spread.verdict(0.52, s, 0.02) == spread.WITHIN
    assert not spread.seed_independent(spread.stats([0.53]))  # one seed says nothing
    assert not spread.seed_independent(spread.stats([0.53, 0.54]))


def test_one_seed_has_no_sd_and_its_value_is_the_range():
    s = spread.stats([0.5])
    assert (s.sd, spread.bounds(s, 0.1)) == (None, (pytest.approx(0.4), pytest.approx(0.6)))


def test_the_curves_carry_the_books_accuracy_where_it_gives_one(tmp_path):
    """Validation-accuracy curves against the book's precision would compare unlike things."""
    from dl4cv.report import book as report_stage
    from dl4cv.seeds.runs import SeedRun, SeedRuns

    figures = yaml.safe_load(yaml.safe_dump(FIGURES))
    net = figures["experiments"]["net"]
    net["comparisons"] = net["comparisons"][1::-1]  # precision first, then accuracy
    figures["experiments"]["mlp"] = {
        **net,
        "book_id": "mlp",
        "comparisons": [{"metric": "precision_weighted", "book": 0.57, "compare": "at_least"}],
    }
    path = tmp_path / "figures.yaml"
    path.write_text(yaml.safe_dump(figures))
    runs = SeedRuns(
        {
            exp: [SeedRun(exp, "42", "r", "pipeline", "book", {"accuracy": 0.9}, [0.5, 0.9])]
            for exp in ("net", "mlp")
        },
        [],
    )
    section = seed_report.build(report_stage.load_figures(path), runs)
    lines = {e.id: e.book_line for e in section.experiments}
    assert lines["net"] == ("accuracy", 0.93)
    assert lines["mlp"] == ("precision_weighted", 0.57)  # no accuracy: its first figure


# --- the seeds report from a real store --------------------------------------------------------


def log_run(params, exp_id: str, record: dict, curve: list[float], folder: Path) -> str:
    """A run as train + evaluate leave it: tags from run_record, the epochs' val_accuracy,
    the record as the artifact report/metrics.json."""
    with run_record.record("evaluate", exp_id, params) as active:
        for epoch, value in enumerate(curve, 1):
            tracking.log_metrics({"val_accuracy": value}, step=epoch)
        path = folder / f"{exp_id}-{params.seed}-{active.run_id}" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(record))
        tracking.log_artifact(path, run_record.REPORT)
        return active.run_id


def test_report_only_judges_pipeline_book_runs_of_the_newest_commit(
    in_tmp, mlflow_store, monkeypatch, capfd
):
    (in_tmp / "book").mkdir()
    (in_tmp / "book" / "figures.yaml").write_text(yaml.safe_dump(FIGURES))
    book = parse_params(
        toy_params({"net": {"chapter": 12, "dataset": "toy", "model": {"name": "knn"}}})
    )
    logged = in_tmp / "logged"

    # An older commit's seed 1, far off: not counted once the code has changed.
    monkeypatch.setattr(tracking, "git_commit", lambda: "old")
    log_run(
        replace(book, seed=1), "net", {"accuracy": 0.10, "precision_weighted": 0.1}, [0.1], logged
    )
    monkeypatch.setattr(tracking, "git_commit", lambda: "new")
    for seed, acc, prec in ((1, 0.90, 0.95), (2, 0.92, 0.96), (3, 0.94, 0.97)):
        log_run(
            replace(book, seed=seed),
            "net",
            {"accuracy": acc, "precision_weighted": prec, "loss": 0.25},
            [0.5, acc],
            logged,
        )
    # A quick run and a benchmark's run, both with a number that would move the spread.
    log_run(replace(book, seed=4, profile="quick"), "net", {"accuracy": 0.2}, [0.2], logged)
    # The newest run of seed 1, in an ablation (another DVC experiment: other params): not it.
    monkeypatch.setenv("DVC_EXP_NAME", "abl-no-class-weight")
    log_run(
        replace(book, seed=1), "net", {"accuracy": 0.3, "precision_weighted": 0.3}, [0.3], logged
    )
    monkeypatch.delenv("DVC_EXP_NAME")
    with tracking.run("net") as bench:
        tracking.set_tags({"dl4cv.experiment": "net", "dl4cv.seed": "5", "dl4cv.profile": "book",
                         run_record.SOURCE_TAG: "bench"})  # fmt: skip
        tracking.log_metrics({"val_accuracy": 0.99}, step=1)

    capfd.readouterr()
    assert seeds.main(["--report-only"]) == 0
    assert "Downloading artifacts" not in capfd.readouterr().err  # no bar per record read
    out = json.loads((in_tmp / "reports" / "seeds.json").read_text())
    (net,) = out["experiments"]
    assert net["seeds"] == ["1", "2", "3"]
    accuracy, precision, loss = net["figures"]  # the info row is not judged
    assert accuracy["values"] == [0.90, 0.92, 0.94]
    assert (accuracy["n"], accuracy["mean"], accuracy["sd"]) == (
        3,
        pytest.approx(0.92),
        pytest.approx(0.02),
    )
    assert (accuracy["min"], accuracy["max"]) == (0.90, 0.94)
    assert accuracy["verdict"] == spread.WITHIN  # 0.93 in [0.88, 0.96]
    assert precision["verdict"] == spread.WITHIN  # 0.97 = max, tolerance 0
    # 0.25 on every seed, under the book's bar of at most 0.4: the seed does not move it, and
    # beating a bar reproduces it.
    assert (loss["verdict"], loss["seed_independent"]) == (spread.OURS_BETTER, True)
    assert not accuracy["seed_independent"]
    assert [r["run_id"] for r in out["outside_pipeline"]] == [bench.run_id]
    assert out["outside_pipeline"][0]["source"] == "bench"

    png = in_tmp / "reports" / "seeds" / "net.png"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    page = (in_tmp / "reports" / "seeds.html").read_text()
    assert 'href="seeds/net.png"' in page and "data:image/png;base64," in page
    md = (in_tmp / "reports" / "seeds.md").read_text()
    assert (
        "| 12 | net | accuracy | 0.93 | 3 | 1, 2, 3 | 0.92 ± 0.02 | 0.9–0.94 | within spread |"
        in md
    )
    assert (
        "| 12 | net | loss | 0.4 | 3 | 1, 2, 3 | 0.25 (same on every seed) | 0.25–0.25 "
        "| outside spread (ours better) |" in md
    )
    assert spread.RULE in md

    # The book report (report stage) carries the same section: book.md, book.html, book.json.
    from dl4cv.report import book as report_stage
    from dl4cv.report import render

    section = seed_report.build(report_stage.load_figures("book/figures.yaml"), seed_runs.collect())
    render.BookReport([], "book", "book/figures.yaml", section).write(in_tmp / "book-out")
    book_md = (in_tmp / "book-out" / "book.md").read_text()
    assert "| 12 | net | accuracy | 0.93 | 3 | 1, 2, 3 | 0.92 ± 0.02 | 0.9–0.94 |" in book_md
    assert spread.RULE in book_md
    (net_in_book,) = json.loads((in_tmp / "book-out" / "book.json").read_text())["seeds"][
        "experiments"
    ]
    assert net_in_book["figures"][0]["values"] == [0.90, 0.92, 0.94]
    assert "data:image/png;base64," in (in_tmp / "book-out" / "book.html").read_text()


def test_bad_input_is_one_line_and_queues_nothing(in_tmp, capsys):
    for argv, says in (
        (["--seeds", "0"], "--seeds: expected at least 1, got 0"),
        (["--profile", "fast"], "--profile: expected one of book, quick, got 'fast'"),
        (["-S", "seed=3"], "-S seed=3"),
        (["--per-gpu", "0"], "--per-gpu: expected at least 1, got 0"),
        (["--gpus", "first"], "--gpus: expected indices like 0,1 or none, got 'first'"),
    ):
        assert seeds.main(argv) == 1
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1
    assert not (in_tmp / ".dvc").exists()


def test_workers_take_the_gpus_in_turn():
    assert seeds.worker_devices(["0", "1"], 1) == ["0", "1"]
    assert seeds.worker_devices(["0", "1"], 2) == ["0", "1", "0", "1"]
    assert seeds.worker_devices(["3"], 3) == ["3", "3", "3"]


@pytest.mark.parametrize(
    ("n_seeds", "n_gpus", "cores", "gib", "per_gpu"),
    [
        (3, 1, 16, 139.8, 3),  # one H200, 16 cores: every seed at once
        (3, 1, 8, 139.8, 2),  # 4 cores a worker
        (5, 2, 64, 80.0, 3),  # 5 seeds over 2 GPUs: 3 on each at most
        (3, 1, 16, 24.0, 1),  # 16 GiB a worker
        (1, 4, 2, 0.0, 1),  # nvidia-smi silent, 2 cores: still one worker per GPU
    ],
)
def test_workers_per_gpu_by_default_as_many_as_fit(n_seeds, n_gpus, cores, gib, per_gpu):
    assert seeds.per_gpu_auto(n_seeds, n_gpus, cores, gib) == per_gpu


def test_workers_sharing_a_gpu_are_held_to_their_share_of_its_memory(monkeypatch):
    for name in ("XLA_PYTHON_CLIENT_MEM_FRACTION", "TF_FORCE_GPU_ALLOW_GROWTH"):
        monkeypatch.delenv(name, raising=False)
    assert seeds.shared_gpu_env(1) == {}  # a GPU of its own: JAX's defaults
    assert seeds.shared_gpu_env(3) == {
        "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.30",
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
    }
    monkeypatch.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.2")  # the user's setting wins
    assert seeds.shared_gpu_env(2) == {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}


# --- the command, end to end: real DVC queue, real store ---------------------------------------


@pytest.mark.integration
def test_two_seeds_run_as_queued_experiments(tmp_path):
    """`python -m dl4cv.seeds --seeds 2 --start 1 --gpus 0,1` on a k-NN of the 8x8 digits: two
    DVC queue workers, each started with its own CUDA_VISIBLE_DEVICES (no GPU here: the
    variable is only passed on, and recorded by every run), two DVC experiments, two MLflow
    runs tagged seed 1 and 2, and their spread in reports/seeds.json."""
    params = digits_params({"knn_digits": KNN_DIGITS})
    pipeline = stages_of("download", "preprocess", "split", "train", "evaluate", "report")
    root = make_repo(tmp_path / "repo", params, pipeline)
    figure = {"metric": "accuracy", "book": 0.98, "compare": "at_least", "tolerance": 0.02}
    entry = {"book_id": "knn_digits", "chapter": 7, "title": "k-NN", "book_figure": "0.98"}
    figures = {"experiments": {"knn_digits": entry | {"comparisons": [figure]}}}
    (root / "book" / "figures.yaml").write_text(yaml.safe_dump(figures))
    run(
        ["git", "commit", "-qam", "figures"],
        root,
        os.environ | {"GIT_AUTHOR_NAME": "t", "GIT_COMMITTER_NAME": "t", "EMAIL": "t@t"},
    )
    env = warm_env(tmp_path / "runtime") | {"DL4CV_WARM": "0"}

    done = run(
        [
            sys.executable,
            "-m",
            "dl4cv.seeds",
            "--seeds",
            "2",
            "--start",
            "1",
            "--gpus",
            "0,1",
            "--poll",
            "1",
        ],
        root,
        env,
    )
    assert "2 success" in done.stdout, done.stdout
    assert "queue worker 1 on GPU 0" in done.stdout and "queue worker 2 on GPU 1" in done.stdout
    exps = run(
        [sys.executable, "-m", "dvc", "exp", "list", "--name-only"], root, env
    ).stdout.split()
    assert sorted(exps) == ["seed-1", "seed-2"]
    with sqlite3.connect(root / "mlflow.db") as db:
        tagged = db.execute(
            "SELECT s.value, x.value FROM runs r JOIN tags s ON s.run_uuid = r.run_uuid "
            "JOIN tags x ON x.run_uuid = r.run_uuid WHERE r.name = 'knn_digits' "
            "AND s.key = 'dl4cv.seed' AND x.key = 'dl4cv.source'"
        ).fetchall()
    assert sorted(tagged) == [("1", "pipeline"), ("2", "pipeline")]
    with sqlite3.connect(root / "mlflow.db") as db:
        devices = db.execute(
            "SELECT t.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            "WHERE r.name = 'knn_digits' AND t.key = 'cuda_visible_devices'"
        ).fetchall()
    assert len(devices) == 2 and {d for (d,) in devices} <= {"0", "1"}  # a worker's own GPU
    (knn,) = json.loads((root / "reports" / "seeds.json").read_text())["experiments"]
    assert knn["seeds"] == ["1", "2"] and knn["figures"][0]["n"] == 2
    shutil.rmtree(root / ".dvc" / "tmp" / "exps", ignore_errors=True)

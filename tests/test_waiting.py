"""A dataset with no URL and no mirror entry waits: each stage writes every output dvc.yaml
declares for it as a placeholder that says what to run, no stage opens an MLflow run, the
book report lists what waits. A dataset that has a URL still fails when it cannot be had."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import pytest
import yaml

from dl4cv.config import ConfigError, parse_params
from dl4cv.data import sources
from dl4cv.data.formats import ProcessedDataset
from dl4cv.data.sources import MIRROR_ENV, DownloadError, dataset_mirror, fetch, read_descriptor
from dl4cv.data.splits import Split
from dl4cv.data.waiting import STATUS, DataWaiting, fix_for
from dl4cv.pipeline import download, evaluate, exercise, predict, preprocess, split, train
from dl4cv.report import book as report_stage
from dl4cv.report import render, verdicts
from dl4cv.runtime.fileio import read_json
from dl4cv.runtime.paths import processed_file, raw_dir, split_file
from tests.conftest import REPO, make_image_zip

FIX = fix_for("animals")
ANIMAL_EXERCISES = (
    "linear_scoring",
    "regularization_none",
    "regularization_l1",
    "regularization_l2",
)
ANIMALS = {
    "source": {"format": "image-folder-zip", "url": None, "root": "animals", "mirror": None},
    "image": {"width": 32, "height": 32, "channels": 3},
    "split": {"method": "stratified"},
}
RAW = {
    "profile": "quick",
    "seed": 1,
    "preprocess": {},
    "datasets": {"animals": ANIMALS},
    "experiments": {
        "knn_animals": {"chapter": 7, "dataset": "animals", "model": {"name": "knn"}},
        "shallownet_animals": {
            "chapter": 12,
            "dataset": "animals",
            "model": {"name": "shallownet"},
        },
    },
    "predictions": {
        "shallownet_load": {"chapter": 13, "experiment": "shallownet_animals", "dataset": "animals"}
    },
    "exercises": {  # the real exercises_animals group, as params.yaml declares it
        exercise_id: yaml.safe_load((REPO / "params.yaml").read_text())["exercises"][exercise_id]
        for exercise_id in ANIMAL_EXERCISES
    },
}


def declared_outs(stage: str, key: str, item: dict | None = None) -> list[Path]:
    """The outputs the real dvc.yaml declares for one stage instance (outs, metrics, plots)."""
    body = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    body = body.get("do", body)
    paths = []
    for section in ("outs", "metrics", "plots"):
        for out in body.get(section, []):
            path = next(iter(out)) if isinstance(out, dict) else out
            path = path.replace("${key}", key)
            for name, value in (item or {}).items():
                path = path.replace(f"${{item.{name}}}", str(value))
            paths.append(Path(path))
    return paths


def test_every_stage_waits_for_animals_writing_its_declared_outputs(
    in_tmp: Path, caplog, monkeypatch
):
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    params = parse_params(RAW)
    caplog.set_level("WARNING")
    assert download.run("animals", params) is None
    assert json.loads((raw_dir("animals") / "dataset.json").read_text()) == {
        "dataset": "animals",
        "status": STATUS,
        "waiting": FIX,
    }
    assert preprocess.run("animals", params) is None
    assert split.run("animals", params) is None
    for exp_id in RAW["experiments"]:
        assert train.run(exp_id, params)["status"] == STATUS
        assert evaluate.run(exp_id, params)["status"] == STATUS
    assert [m["status"] for m in exercise.run_group(list(RAW["exercises"]), params)] == [STATUS] * 4
    assert predict.run("shallownet_load", params)["status"] == STATUS

    animals = {"dataset": "animals", "experiment": "shallownet_animals"}
    outs = [
        *(
            p
            for stage in ("download", "preprocess", "split")
            for p in declared_outs(stage, "animals")
        ),
        *(
            p
            for e in RAW["experiments"]
            for s in ("train", "evaluate")
            for p in declared_outs(s, e)
        ),
        *declared_outs("exercises_animals", ""),
        *declared_outs("predict", "shallownet_load", animals),
    ]
    assert len(outs) == 25 and [p for p in outs if not p.exists()] == []
    assert [p.name for p in raw_dir("animals").iterdir()] == ["dataset.json"]  # no data file
    for path in (Path("reports/experiments/knn_animals/curves.png"), Path(outs[-3])):
        assert cv2.imread(str(path)) is not None
    for exp_id in [*RAW["experiments"], *RAW["exercises"], "shallownet_load"]:
        record = read_json(Path("reports/experiments") / exp_id / "metrics.json")
        assert (record["status"], record["waiting"], record["profile"]) == (STATUS, FIX, "quick")
    assert not Path("mlflow.db").exists()  # no stage opened an MLflow run
    # One WARNING per stage instance, each ending with the fix.
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 3 + 2 * 2 + 4 + 1
    assert all(re.match(rf"\w+: {STATUS} \(animals has no source yet", w) for w in warnings)
    assert all(w.endswith(f"to provide it: {FIX}") for w in warnings)


def test_each_placeholder_makes_its_loader_raise_the_fix(in_tmp: Path, monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    params = parse_params(RAW)
    download.run("animals", params)
    preprocess.run("animals", params)
    split.run("animals", params)
    for load in (
        lambda: read_descriptor(raw_dir("animals")),
        lambda: ProcessedDataset.load(processed_file("animals")),
        lambda: Split.from_json(read_json(split_file("animals"))),
    ):
        with pytest.raises(DataWaiting) as info:
            load()
        assert (info.value.dataset, info.value.fix) == ("animals", FIX)


def test_a_dataset_with_a_url_that_cannot_be_had_still_fails(in_tmp: Path, monkeypatch):
    monkeypatch.setattr(sources.time, "sleep", lambda seconds: None)
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    raw = json.loads(json.dumps(RAW))
    raw["datasets"]["animals"]["source"] |= {
        "url": "http://127.0.0.1:9/animals.zip",  # the discard port: connection refused
        "sha256": "0" * 64,
    }
    with pytest.raises(DownloadError, match="giving up after 5 attempts"):
        download.run("animals", parse_params(raw))
    assert not (raw_dir("animals") / "dataset.json").exists()


def mirror_with_animals(folder: Path) -> Path:
    folder.mkdir()
    archive = make_image_zip(folder / "animals.zip", "animals", 3, ["cats", "dogs", "panda"])
    entry = {"file": "animals.zip", "format": "image-folder-zip", "root": "animals"}
    entry["sha256"] = sources.sha256sum(archive)
    (folder / "mirror.json").write_text(json.dumps({"animals": entry}))
    return folder


def with_mirror(value: str) -> dict:
    raw = json.loads(json.dumps(RAW))
    raw["datasets"]["animals"]["source"]["mirror"] = value
    return raw


def test_the_mirror_param_is_relative_to_the_repository_and_beats_the_env(
    in_tmp: Path, monkeypatch
):
    mirror_with_animals(in_tmp / "mirror")
    (in_tmp / "other").mkdir()
    (in_tmp / "other" / "mirror.json").write_text("{}")
    monkeypatch.setenv(MIRROR_ENV, str(in_tmp / "other"))
    dataset = parse_params(with_mirror("mirror")).dataset("animals")
    assert dataset_mirror(dataset) == in_tmp / "mirror"
    fetched = download.run("animals", parse_params(with_mirror("mirror")))
    assert (fetched.origin, fetched.location) == ("mirror", str(in_tmp / "mirror" / "animals.zip"))
    # The folder is where the bytes were, not what they are: dataset.json does not name it.
    assert "mirror" not in read_json(raw_dir("animals") / "dataset.json")["source"]
    assert dataset_mirror(parse_params(RAW).dataset("animals")) == in_tmp / "other"


def test_a_mirror_param_that_does_not_list_the_dataset_fails(in_tmp: Path):
    (in_tmp / "empty").mkdir()
    (in_tmp / "empty" / "mirror.json").write_text("{}")
    dataset = parse_params(with_mirror("empty")).dataset("animals")
    with pytest.raises(DownloadError, match=r"source\.mirror='empty': .* has no 'animals' entry"):
        dataset_mirror(dataset)
    dataset = parse_params(with_mirror("nowhere")).dataset("animals")
    with pytest.raises(DownloadError, match=r"source\.mirror='nowhere': no mirror\.json found"):
        fetch(dataset, in_tmp / "raw", dataset_mirror(dataset))


@pytest.mark.parametrize("value", ["", "  ", "https://example.org/mirror"])
def test_config_rejects_a_mirror_that_is_no_local_folder(value: str):
    with pytest.raises(ConfigError, match=r"datasets\.animals\.source\.mirror: expected a local"):
        parse_params(with_mirror(value))


def test_the_book_report_lists_what_waits_with_its_fix(tmp_path: Path):
    experiments = tmp_path / "experiments"
    waiting = DataWaiting("animals", FIX)
    for exp_id, chapter in (("knn_animals", 7), ("linear_scoring", 8)):
        (experiments / exp_id).mkdir(parents=True)
        record = waiting.record(experiment=exp_id, chapter=chapter, profile="book")
        (experiments / exp_id / "metrics.json").write_text(json.dumps(record))
    rows = verdicts.build_rows(
        report_stage.load_figures(REPO / "book" / "figures.yaml"), experiments
    )
    by_id = {row.id: row for row in rows}
    assert by_id["knn_animals"].verdict == verdicts.WAITING == STATUS
    assert {c.verdict for c in by_id["knn_animals"].comparisons} == {STATUS}
    assert by_id["shallownet_animals"].verdict == verdicts.MISSING  # no record at all: missing
    assert verdicts.summarize(rows)[verdicts.WAITING] == ["knn_animals", "linear_scoring"]

    markdown = render.markdown_page(render.BookReport(rows, "book", "figures.yaml"))
    section = markdown.split("## Not run: data missing\n", 1)[1].split("## Results")[0]
    assert f"| knn_animals | animals | `{FIX}` |" in section
    assert f"| linear_scoring | animals | `{FIX}` |" in section
    page = render.html_page(render.BookReport(rows, "book", "figures.yaml"))
    assert "<h2>Not run: data missing</h2>" in page and 'class="v-waiting-for-data"' in page
    book = render.json_data(render.BookReport(rows, "book", "figures.yaml"))
    assert book["not_run"] == [
        {"id": "knn_animals", "dataset": "animals", "waiting": FIX},
        {"id": "linear_scoring", "dataset": "animals", "waiting": FIX},
    ]
    assert book["summary"][STATUS] == 2
    nothing_waits = [row for row in rows if row.verdict != STATUS]
    assert "Not run" not in render.markdown_page(
        render.BookReport(nothing_waits, "book", "figures.yaml")
    )

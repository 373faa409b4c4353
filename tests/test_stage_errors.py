"""Bad input through the real stage scripts: one line naming the file or key, exit status 1,
no traceback, and nothing already produced lost."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from dl4cv.config import Source
from dl4cv.data.sources import Fetched, sha256sum
from tests.conftest import REPO, blob_image, encode, make_image_zip

RAW = Path("data/raw/animals")
ZIP = RAW / "animals.zip"


def params(**image) -> dict:
    return {
        "profile": "book",
        "seed": 1,
        "preprocess": {"workers": 1},
        "datasets": {
            "animals": {
                "source": {"format": "image-folder-zip", "root": "animals"},
                "image": {"width": 16, "height": 16, "channels": 3, **image},
                "split": {"method": "stratified"},
            }
        },
        "experiments": {
            "knn_animals": {"chapter": 7, "dataset": "animals", "model": {"name": "knn"}},
        },
    }


def stage(cwd: Path, name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / f"{name}.py"), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_error_line(done: subprocess.CompletedProcess, stage_name: str) -> str:
    """The stage failed with status 1 and its whole output is one error line."""
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    prefix = f"[{stage_name}] ERROR "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0].removeprefix(prefix)


def describe(folder: Path, file: Path, **source) -> None:
    """The dataset.json the download stage writes, for `file` as it is now."""
    fetched = Fetched(
        "animals", file.name, sha256sum(file), "mirror", str(file), asdict(Source(**source))
    )
    fetched.write(folder)


@pytest.fixture
def project(in_tmp: Path) -> Path:
    """A project folder with params.yaml and an earlier run's processed outputs."""
    Path("params.yaml").write_text(yaml.safe_dump(params()))
    Path("data/processed").mkdir(parents=True)
    Path("data/processed/animals.npz").write_bytes(b"an earlier run's output")
    Path("data/processed/animals-rejects.csv").write_text("file,reason\n")
    RAW.mkdir(parents=True)
    return in_tmp


def earlier_outputs_kept() -> bool:
    return (
        Path("data/processed/animals.npz").read_bytes() == b"an earlier run's output"
        and Path("data/processed/animals-rejects.csv").read_text() == "file,reason\n"
    )


def test_preprocess_of_a_verified_file_that_is_not_a_zip(project: Path):
    ZIP.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    describe(RAW, ZIP, format="image-folder-zip", root="animals")  # the sha256 matches
    line = one_error_line(stage(project, "preprocess", "animals"), "preprocess")
    assert line == f"{ZIP}: not a valid zip archive (File is not a zip file)"
    assert earlier_outputs_kept()


def test_download_from_a_mirror_whose_file_is_not_a_zip(project: Path, tmp_path_factory):
    mirror = tmp_path_factory.mktemp("mirror")
    data = np.random.default_rng(1).integers(0, 256, 5000, np.uint8).tobytes()
    (mirror / "animals.zip").write_bytes(data)
    entry = {"file": "animals.zip", "sha256": sha256sum(mirror / "animals.zip")}
    (mirror / "mirror.json").write_text(
        json.dumps({"animals": {**entry, "format": "image-folder-zip"}})
    )
    done = stage(project, "download", "animals", env={"DL4CV_MIRROR": str(mirror)})
    line = one_error_line(done, "download")
    assert line == (
        f"{mirror / 'animals.zip'}: not a valid zip archive (File is not a zip file), though its "
        "sha256 is the declared one: the declaration names the wrong file"
    )
    assert list(RAW.iterdir()) == []  # no copy, no temporary file, no descriptor


def test_preprocess_with_an_empty_class_folder(project: Path):
    make_image_zip(ZIP, "animals", 2, ["cats", "dogs"], size=20)
    with zipfile.ZipFile(ZIP, "a") as archive:
        archive.writestr(zipfile.ZipInfo("animals/panda/"), b"")
    describe(RAW, ZIP, format="image-folder-zip", root="animals")
    line = one_error_line(stage(project, "preprocess", "animals"), "preprocess")
    assert line == (
        f"{ZIP}: class 'panda' has no usable image: no file in animals/panda/; "
        "each class needs at least one"
    )
    assert earlier_outputs_kept()


def test_preprocess_lists_members_outside_the_class_folders_and_writes_nothing_there(
    project: Path,
):
    outside = project.parent / f"{project.name}-escaped.jpg"
    image = encode(blob_image(0, 20))
    extra = {"animals/../../escaped.jpg": image, str(outside): image, "animals/README": b"hi"}
    make_image_zip(ZIP, "animals", 2, ["cats", "dogs"], extra, size=20)
    describe(RAW, ZIP, format="image-folder-zip", root="animals")
    done = stage(project, "preprocess", "animals")
    assert done.returncode == 0, done.stderr
    with open("data/processed/animals-rejects.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [
        ["file", "reason"],
        [str(outside), "unsafe name: an absolute path"],
        ["animals/../../escaped.jpg", "unsafe name: climbs out of the tree with '..'"],
        ["animals/README", "not in a class folder (animals/<class>/<file>)"],
    ]
    assert not outside.exists() and not (project.parent / "escaped.jpg").exists()
    assert "4 images (16, 16, 3) in 2 classes, 3 rejected" in done.stderr


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            ("experiments", "knn_animals", "model", "n_neighbors"),
            0,
            "experiments.knn_animals.model.n_neighbors: expected an integer >= 1, got 0",
        ),
        (("seed",), -1, "seed: expected an integer in 0..4294967295, got -1"),
    ],
)
def test_a_bad_param_fails_before_any_data_is_read(project: Path, key, value, expected):
    raw = params()
    node = raw
    for part in key[:-1]:
        node = node[part]
    node[key[-1]] = value
    Path("params.yaml").write_text(yaml.safe_dump(raw))
    # no dataset.json at all: a stage that read data first would complain about that instead
    line = one_error_line(stage(project, "preprocess", "animals"), "preprocess")
    assert line == f"params.yaml: {expected}"
    assert earlier_outputs_kept()


def test_an_image_side_too_large_is_refused_with_the_rule(project: Path):
    Path("params.yaml").write_text(yaml.safe_dump(params(width=100000)))
    line = one_error_line(stage(project, "split", "animals"), "split")
    assert line.startswith(
        "params.yaml: datasets.animals.image.width: expected an integer in 1..4096, got 100000 "
        "(a processed dataset is one in-memory array of N x height x width x channels bytes"
    )


def test_a_duplicate_key_in_params_yaml(project: Path):
    text = yaml.safe_dump(params(), sort_keys=False) + "seed: 2\n"
    Path("params.yaml").write_text(text)
    line = one_error_line(stage(project, "split", "animals"), "split")
    first = text.splitlines().index("seed: 1") + 1
    last = len(text.splitlines())
    assert line == (
        f"params.yaml: line {last}: duplicate key 'seed' (first on line {first}); "
        "YAML would keep only the last value"
    )


def test_a_folder_where_the_dataset_file_should_be(project: Path):
    ZIP.write_bytes(b"x")
    describe(RAW, ZIP, format="image-folder-zip", root="animals")
    ZIP.unlink()
    ZIP.mkdir()  # an OSError on a named file: one line with the file and the reason
    line = one_error_line(stage(project, "preprocess", "animals"), "preprocess")
    assert line == f"{ZIP}: Is a directory"
    assert earlier_outputs_kept()

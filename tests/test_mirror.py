"""`python -m dl4cv.mirror add`: the reader's copy of Animals checked, packed, listed, and then
verified by the download stage like any download. Real JPEGs written by OpenCV."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from dl4cv.config import parse_params
from dl4cv.data.sources import DownloadError, dataset_mirror, fetch, sha256sum
from dl4cv.mirror import main
from tests.conftest import blob_image, encode, make_image_zip

CLASSES = ["cats", "dogs", "panda"]
PARAMS = {
    "profile": "book",
    "seed": 1,
    "preprocess": {"workers": 2},
    "datasets": {
        "animals": {
            "source": {"format": "image-folder-zip", "root": "animals", "mirror": None},
            "image": {"width": 32, "height": 32, "channels": 3},
            "split": {"method": "stratified"},
        },
        "digits": {
            "source": {"format": "sklearn-digits"},
            "image": {"width": 8, "height": 8, "channels": 1},
            "split": {"method": "random"},
        },
    },
    "experiments": {},
}


@pytest.fixture
def project(in_tmp: Path) -> Path:
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    return in_tmp


def book_folder(root: Path, per_class: int = 4, classes: list[str] = CLASSES) -> Path:
    """The book's `animals/<class>/<file>` tree; the same bytes as make_image_zip writes."""
    for label, name in enumerate(classes):
        (root / "animals" / name).mkdir(parents=True)
        for i in range(per_class):
            image = blob_image(label, 48, seed=label * 1000 + i)
            (root / "animals" / name / f"{i:04d}.jpg").write_bytes(encode(image))
    return root / "animals"


def refusal(capsys: pytest.CaptureFixture, *args: str) -> str:
    with pytest.raises(SystemExit) as info:
        main(["add", *args])
    message = str(info.value.code)
    assert message.startswith("mirror: ") and "\n" not in message
    assert capsys.readouterr().out == ""
    return message


def test_the_book_folder_becomes_a_verified_mirror_entry(project: Path, capsys):
    folder = book_folder(project / "book")
    main(["add", "animals", str(folder)])
    out = capsys.readouterr().out
    archive = project / "mirror" / "animals.zip"
    entry = json.loads((project / "mirror" / "mirror.json").read_text())["animals"]
    assert entry == {
        "file": "animals.zip",
        "sha256": sha256sum(archive),
        "format": "image-folder-zip",
        "root": "animals",
    }
    with zipfile.ZipFile(archive) as packed:
        names = packed.namelist()
    assert names == sorted(f"animals/{c}/{i:04d}.jpg" for c in CLASSES for i in range(4))
    assert "12 images (cats 4, dogs 4, panda 4)" in out
    assert "  dvc exp run -S datasets.animals.source.mirror=mirror\n" in out

    # The download stage takes it from params.yaml and verifies it by its sha256.
    params = copy.deepcopy(PARAMS)
    params["datasets"]["animals"]["source"]["mirror"] = "mirror"
    dataset = parse_params(params).dataset("animals")
    fetched = fetch(dataset, project / "raw", dataset_mirror(dataset))
    assert (fetched.origin, fetched.sha256) == ("mirror", entry["sha256"])
    with zipfile.ZipFile(archive, "a") as packed:  # the mirror's file changed behind its back
        packed.writestr("animals/cats/extra.jpg", b"x")
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch(dataset, project / "raw2", dataset_mirror(dataset))


def test_the_zip_the_book_ships_gives_the_same_bytes_wherever_its_folder_is(project: Path, capsys):
    main(["add", "animals", str(book_folder(project / "book")), "--to", "a"])
    shipped = make_image_zip(
        project / "shipped.zip",
        "downloads/animals",
        4,
        CLASSES,
        extra={
            "__MACOSX/downloads/animals/cats/._0000.jpg": b"resource fork",
            "downloads/animals/cats/.DS_Store": b"finder",
            "downloads/animals/README.txt": b"the book's dataset",
        },
    )
    main(["add", "animals", str(shipped), "--to", str(project / "b")])
    out = capsys.readouterr().out
    assert sha256sum(project / "a" / "animals.zip") == sha256sum(project / "b" / "animals.zip")
    assert "3 files outside the class folders (or hidden) left out" in out
    assert "datasets.animals.source.mirror=b\n" in out  # inside the repository: relative


def test_a_missing_class_folder_is_refused_in_one_line(project: Path, capsys):
    folder = book_folder(project / "book", classes=["cats", "dogs"])
    message = refusal(capsys, "animals", str(folder))
    assert "no class folder panda/ with files (found only cats/, dogs/)" in message
    assert not (project / "mirror").exists()


def test_a_class_without_a_decodable_image_is_refused_and_nothing_is_written(project: Path, capsys):
    folder = book_folder(project / "book")
    for path in (folder / "panda").iterdir():
        path.write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    message = refusal(capsys, "animals", str(folder))
    assert message.endswith("no image OpenCV can decode in panda/")
    assert list((project / "mirror").iterdir()) == []  # no archive, no temporary file


def test_undecodable_files_are_kept_and_named(project: Path, capsys):
    folder = book_folder(project / "book")
    (folder / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    main(["add", "animals", str(folder)])
    out = capsys.readouterr().out
    assert "12 images (cats 4, dogs 4, panda 4)" in out
    assert "1 files OpenCV cannot decode were kept" in out and "dogs/broken.jpg" in out
    with zipfile.ZipFile(project / "mirror" / "animals.zip") as packed:
        assert "animals/dogs/broken.jpg" in packed.namelist()  # preprocess lists it as a reject


def test_the_manifest_keeps_its_other_entries(project: Path, capsys):
    (project / "mirror").mkdir()
    other = {"file": "mnist/mnist.npz", "sha256": "0" * 64, "format": "keras-npz"}
    (project / "mirror" / "mirror.json").write_text(json.dumps({"mnist": other}))
    main(["add", "animals", str(book_folder(project / "book"))])
    manifest = json.loads((project / "mirror" / "mirror.json").read_text())
    assert manifest["mnist"] == other and manifest["animals"]["format"] == "image-folder-zip"

    capsys.readouterr()
    (project / "mirror" / "animals.zip").unlink()
    (project / "mirror" / "mirror.json").write_text("[not json")
    assert "mirror.json: not valid JSON" in refusal(capsys, "animals", str(project / "book"))
    assert not (project / "mirror" / "animals.zip").exists()  # refused before any writing


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["digits", "book"], "datasets.digits: format 'sklearn-digits'"),
        (["cifar", "book"], "unknown dataset 'cifar'"),
        (["animals", "nowhere"], "nowhere: no such folder or file"),
        (["animals", "params.yaml"], "params.yaml: neither a folder nor a zip archive"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(project: Path, capsys, args, expected):
    book_folder(project / "book")
    assert expected in refusal(capsys, *args)


def test_the_command_exits_1_with_one_line_on_stderr(project: Path):
    result = subprocess.run(
        [sys.executable, "-m", "dl4cv.mirror", "add", "animals", "nowhere"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == "mirror: nowhere: no such folder or file\n"

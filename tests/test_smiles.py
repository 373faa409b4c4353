"""SMILES (ch 22): GitHub's archive layout, its content checksum, the book's class weights."""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dl4cv.config import ConfigError, Preprocess, Source, load_params, parse_params
from dl4cv.data.formats import read_raw
from dl4cv.data.sources import DownloadError, Fetched, content_sha256, fetch, sha256sum
from dl4cv.training.inputs import balanced_class_weights
from tests.conftest import REPO, blob_image, encode, toy_params
from tests.test_sources import FAST, Server, server  # noqa: F401 (server: a fixture)

TOP = "SMILEsmileD-master"


def smiles_members(smiling: int = 3, not_smiling: int = 5) -> dict[str, bytes]:
    """GitHub's archive of hromi/SMILEsmileD in miniature: the two-level class folders, the
    .idx lists beside them and the repository's other files, none of them images of the set."""
    members = {f"{TOP}/README": b"SMILEs - contains positive and negative sample sets\n"}
    for i in range(smiling):
        image = encode(blob_image(1, 64, seed=i, channels=1))
        members[f"{TOP}/SMILEs/positives/positives7/{1000 + i}.jpg"] = image
    for i in range(not_smiling):
        image = encode(blob_image(0, 64, seed=100 + i, channels=1))
        members[f"{TOP}/SMILEs/negatives/negatives7/{i}.jpg"] = image
    members[f"{TOP}/SMILEs/positives/smiles_01_pos.idx"] = b"positives7/1000.jpg\n"
    members[f"{TOP}/SMILEs/negatives/smiles_01_neg.idx"] = b"negatives7/0.jpg\n"
    members[f"{TOP}/smileD/smileD_01.xml"] = b"<opencv_storage/>"
    return members


def write_zip(
    path: Path, members: dict[str, bytes], order=sorted, method=zipfile.ZIP_STORED, year=2014
) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name in order(members):
            info = zipfile.ZipInfo(name, date_time=(year, 1, 2, 3, 4, 6))
            info.compress_type = method
            archive.writestr(info, members[name])
    return path


def smiles_source() -> Source:
    """The source params.yaml declares for SMILES: what the tests check is the real entry."""
    return load_params(REPO / "params.yaml").dataset("smiles").source


def test_params_layout_reads_githubs_smiles_archive(tmp_path: Path):
    source = smiles_source()
    path = write_zip(tmp_path / "master.zip", smiles_members(smiling=3, not_smiling=5))
    described = dataclasses.asdict(source)
    fetched = Fetched("smiles", path.name, sha256sum(path), "official", "", described)
    image = load_params(REPO / "params.yaml").dataset("smiles").image

    data = read_raw(fetched, tmp_path, image, Preprocess(workers=1), progress=False)

    # sorted class names: index 1 is smiling, the class the book weighs 2.56
    assert data.classes == ["not_smiling", "smiling"]
    assert np.bincount(data.labels).tolist() == [5, 3]
    assert data.images.shape == (8, 28, 28, 1) and data.images.dtype == np.uint8
    # the repository's other files are not images of the set: each is listed, with why
    root = f"{TOP}/SMILEs/"
    declared = "not in a declared class folder (negatives/negatives7/, positives/positives7/)"
    assert {r.name: r.reason for r in data.rejects} == {
        f"{TOP}/README": f"outside the dataset's root folder {root}",
        f"{TOP}/smileD/smileD_01.xml": f"outside the dataset's root folder {root}",
        f"{root}negatives/smiles_01_neg.idx": declared,
        f"{root}positives/smiles_01_pos.idx": declared,
    }
    for name, label in zip(data.ids, data.labels, strict=True):
        assert ("/positives7/" in name) == (data.classes[label] == "smiling")
    assert not any(name.endswith((".idx", "README", ".xml")) for name in data.ids)


def test_content_checksum_ignores_how_the_archive_was_packed(tmp_path: Path):
    source = smiles_source()
    members = smiles_members()
    first = write_zip(tmp_path / "a.zip", members)
    # GitHub regenerating the archive: other order, compression and timestamps, other bytes
    repacked = write_zip(
        tmp_path / "b.zip",
        members,
        order=lambda m: sorted(m, reverse=True),
        method=zipfile.ZIP_DEFLATED,
        year=2024,
    )
    assert sha256sum(first) != sha256sum(repacked)
    assert content_sha256(first, source) == content_sha256(repacked, source)
    # files outside the class folders are not part of the dataset
    extra = write_zip(tmp_path / "c.zip", members | {f"{TOP}/NEWS": b"moved to a new host"})
    assert content_sha256(extra, source) == content_sha256(first, source)


def test_content_checksum_changes_with_any_image(tmp_path: Path):
    source = smiles_source()
    members = smiles_members()
    reference = content_sha256(write_zip(tmp_path / "ref.zip", members), source)
    name = f"{TOP}/SMILEs/positives/positives7/1000.jpg"
    changed = dict(members)
    changed[name] = members[name][:-3] + b"\x00\xff\xd9"
    moved = dict(members)
    moved[name.replace("positives/positives7", "negatives/negatives7")] = moved.pop(name)
    dropped = dict(members)
    del dropped[name]
    for case, variant in (("changed", changed), ("relabelled", moved), ("dropped", dropped)):
        digest = content_sha256(write_zip(tmp_path / f"{case}.zip", variant), source)
        assert digest != reference, case


def smiles_dataset(url: str, digest: str):
    raw = toy_params({})
    raw["datasets"]["smiles"] = {
        "source": {**_declared_source(), "url": url, "content_sha256": digest},
        "image": {"width": 28, "height": 28, "channels": 1},
        "split": {"method": "stratified", "test_size": 0.2, "random_state": 42},
    }
    return parse_params(raw).dataset("smiles")


def _declared_source() -> dict:
    source = dataclasses.asdict(smiles_source())
    return {k: v for k, v in source.items() if v is not None}


def test_official_download_verified_by_content_records_the_bytes(
    tmp_path: Path,
    server: Server,  # noqa: F811
):
    path = write_zip(tmp_path / "served.zip", smiles_members())
    body = path.read_bytes()
    server.plan["/master.zip"] = [("ok", body)]
    dataset = smiles_dataset(server.url("/master.zip"), content_sha256(path, smiles_source()))
    assert dataset.source.sha256 is None

    fetched = fetch(dataset, tmp_path / "raw", **FAST)

    assert fetched.origin == "official"
    assert fetched.sha256 == hashlib.sha256(body).hexdigest()  # what this run really read
    assert (tmp_path / "raw" / "master.zip").read_bytes() == body
    # a second fetch finds the verified copy and does not download again
    fetch(dataset, tmp_path / "raw", **FAST)
    assert server.requests["/master.zip"] == 1


def test_official_download_with_other_images_is_discarded(
    tmp_path: Path,
    server: Server,  # noqa: F811
):
    declared = content_sha256(write_zip(tmp_path / "ref.zip", smiles_members()), smiles_source())
    other = write_zip(tmp_path / "other.zip", smiles_members(smiling=2))
    server.plan["/master.zip"] = [("ok", other.read_bytes())]
    dataset = smiles_dataset(server.url("/master.zip"), declared)

    with pytest.raises(DownloadError, match=f"expected content_sha256 {declared}"):
        fetch(dataset, tmp_path / "raw", **FAST)
    assert not (tmp_path / "raw" / "master.zip").exists()
    assert [p.name for p in (tmp_path / "raw").iterdir()] == []


def test_content_checksum_is_only_for_image_archives():
    raw = toy_params({})
    raw["datasets"]["toy"]["source"]["content_sha256"] = "ab" * 32
    with pytest.raises(ConfigError, match=r"datasets\.toy\.source\.content_sha256: only for"):
        parse_params(raw)


def test_balanced_class_weights_are_the_books_for_the_smiles_counts():
    # the book's counts over the whole set (9,475 / 3,690): weights [1, 2.5677...]
    whole = balanced_class_weights(np.array([0] * 9475 + [1] * 3690), 2)
    assert whole == {0: 1.0, 1: pytest.approx(2.5677, abs=1e-4)}
    # ours come from the training split (7,580 / 2,952 after the stratified 80/20): the same
    train = balanced_class_weights(np.array([1] * 2952 + [0] * 7580), 2)
    assert train == {0: 1.0, 1: pytest.approx(2.5678, abs=1e-4)}

"""SimpleDatasetLoader over real folders and zip archives of OpenCV-encoded images."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from dl4cv.data.loaders import (
    CHUNK,
    Entry,
    FolderSource,
    LoadedImages,
    SimpleDatasetLoader,
    ZipSource,
    layout_entries,
)
from dl4cv.preprocessing import ImageDecoder, ImageToArrayPreprocessor, SimplePreprocessor
from tests.conftest import blob_image, encode

SIZE = 16


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def write_zip(path: Path, files: dict[str, bytes], prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(prefix + name, data)
    return path


def good_and_bad_tree() -> tuple[dict[str, bytes], set[str], set[str]]:
    """Class folders with good JPEG/PNG images of several sizes and four kinds of bad file."""
    jpeg = encode(blob_image(1, size=64, seed=99))
    good = {
        "cats/000.jpg": encode(blob_image(0, size=40, seed=1)),
        "cats/001.jpg": encode(blob_image(0, size=64, seed=2)),
        "cats/002.png": encode(blob_image(0, size=30, seed=3), ".png"),
        "dogs/000.jpg": encode(blob_image(1, size=48, seed=4)),
        "dogs/001.png": encode(blob_image(1, size=16, seed=5), ".png"),
        "dogs/002.png": encode(blob_image(1, size=50, seed=6, channels=1), ".png"),
        "panda/000.jpg": encode(blob_image(2, size=33, seed=7)),
    }
    bad = {
        "cats/corrupt.jpg": np.random.default_rng(0).integers(0, 256, 2000, np.uint8).tobytes(),
        "cats/empty.jpg": b"",
        "dogs/truncated.jpg": jpeg[:100],
        "panda/notes.txt": b"these are pandas\n",
    }
    outside = {"README.md": b"# animals\n", "cats/extra/deep.jpg": jpeg}  # not in a class folder
    return {**good, **bad, **outside}, set(good), set(bad)


def exact_loader(workers: int = 2) -> SimpleDatasetLoader:
    return SimpleDatasetLoader(
        ImageDecoder(3, (SIZE, SIZE), fast=False),
        [SimplePreprocessor(SIZE, SIZE), ImageToArrayPreprocessor()],
        workers=workers,
    )


def expected_image(data: bytes, channels: int = 3) -> np.ndarray:
    flag = cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_GRAYSCALE
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    image = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return image if image.ndim == 3 else image[:, :, np.newaxis]


def source_for(kind: str, tmp_path: Path, files: dict[str, bytes], **layout):
    if kind == "folder":
        return FolderSource(write_folder(tmp_path / "tree", files), **layout)
    return ZipSource(
        write_zip(tmp_path / "tree.zip", files, prefix="animals/"), root="animals", **layout
    )


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_loader_keeps_good_images_and_rejects_every_bad_file(tmp_path: Path, kind: str):
    files, good, bad = good_and_bad_tree()
    source = source_for(kind, tmp_path, files)
    loaded = exact_loader().load(source, progress=False)
    prefix = "" if kind == "folder" else "animals/"

    assert isinstance(loaded, LoadedImages)
    assert sorted(loaded.names) == sorted(prefix + n for n in good)
    assert sorted(r.name for r in loaded.rejects) == sorted(prefix + n for n in bad)
    in_class_folders = len(good) + len(bad)
    assert len(loaded.data) + len(loaded.rejects) == in_class_folders  # nothing silently lost
    assert loaded.data.shape == (len(good), SIZE, SIZE, 3)
    assert loaded.data.dtype == np.uint8
    for i, name in enumerate(loaded.names):
        rel = name.removeprefix(prefix)
        assert loaded.labels[i] == rel.split("/")[0]
        np.testing.assert_array_equal(loaded.data[i], expected_image(files[rel]), err_msg=name)
    assert loaded.splits == [""] * len(good)
    reasons = {r.name.removeprefix(prefix): r.reason for r in loaded.rejects}
    assert reasons["cats/empty.jpg"] == "DecodeError: empty file"
    for name in ("cats/corrupt.jpg", "dogs/truncated.jpg", "panda/notes.txt"):
        assert reasons[name].startswith("DecodeError: not a decodable image"), reasons[name]


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_loader_with_fast_decode_and_gray_output(tmp_path: Path, kind: str):
    files, good, bad = good_and_bad_tree()
    loader = SimpleDatasetLoader(
        ImageDecoder(1, (SIZE, SIZE)), [SimplePreprocessor(SIZE, SIZE), ImageToArrayPreprocessor()]
    )
    loaded = loader.load(source_for(kind, tmp_path, files), progress=False)
    assert loaded.data.shape == (len(good), SIZE, SIZE, 1)
    assert len(loaded.rejects) == len(bad)
    # the class is a bright quadrant: the brightest 8x8 corner names the label
    corners = {"cats": (0, 0), "dogs": (0, 1), "panda": (1, 0)}
    for image, label in zip(loaded.data[..., 0], loaded.labels, strict=True):
        quads = image.reshape(2, 8, 2, 8).mean(axis=(1, 3))
        assert np.unravel_index(quads.argmax(), quads.shape) == corners[label]


def test_corrupt_zip_member_is_rejected_not_fatal(tmp_path: Path):
    good = encode(blob_image(0, size=20, seed=1), ".png")
    victim = encode(blob_image(1, size=20, seed=2), ".png")
    path = tmp_path / "crc.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("a/good.png", good)
        archive.writestr("b/victim.png", victim)
    raw = bytearray(path.read_bytes())
    at = raw.index(victim) + len(victim) // 2
    raw[at] ^= 0xFF  # flip bits inside the stored member: its CRC no longer matches
    path.write_bytes(bytes(raw))
    loaded = exact_loader().load(ZipSource(path), progress=False)
    assert loaded.names == ["a/good.png"]
    assert [r.name for r in loaded.rejects] == ["b/victim.png"]
    assert loaded.rejects[0].reason.startswith("BadZipFile")


def test_smiles_layout_maps_nested_class_folders(tmp_path: Path):
    root = "SMILEsmileD-master/SMILEs"
    files = {
        f"{root}/positives/positives7/{i}.jpg": encode(blob_image(0, 64, seed=i, channels=1))
        for i in range(3)
    } | {
        f"{root}/negatives/negatives7/{i}.jpg": encode(blob_image(3, 64, seed=10 + i, channels=1))
        for i in range(4)
    }
    files[f"{root}/negatives/negatives7/broken.jpg"] = b"\xff\xd8\xff\xe0 broken"
    files["SMILEsmileD-master/README.md"] = b"readme"
    files[f"{root}/positives/list.txt"] = b"not in positives7"
    classes = {"positives/positives7": "smiling", "negatives/negatives7": "not_smiling"}
    source = ZipSource(write_zip(tmp_path / "smiles.zip", files), root=root, classes=classes)
    loader = SimpleDatasetLoader(
        ImageDecoder(1, (32, 32)), [SimplePreprocessor(32, 32), ImageToArrayPreprocessor()]
    )
    loaded = loader.load(source, progress=False)
    assert loaded.data.shape == (7, 32, 32, 1)
    assert sorted(loaded.labels) == ["not_smiling"] * 4 + ["smiling"] * 3
    for name, label in zip(loaded.names, loaded.labels, strict=True):
        assert label == ("smiling" if "/positives7/" in name else "not_smiling")
    assert [r.name for r in loaded.rejects] == [f"{root}/negatives/negatives7/broken.jpg"]


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_cifar_layout_maps_split_folders(tmp_path: Path, kind: str):
    files = {}
    for split, folder, n in (("train", "training", 3), ("test", "testing", 2)):
        for c, cls in enumerate(("airplane", "cat")):
            for i in range(n):
                img = blob_image(c, size=SIZE, seed=i)
                files[f"{folder}/{cls}/{split}{i}.png"] = encode(img, ".png")
    files["extra/cat/x.png"] = encode(blob_image(1, size=SIZE), ".png")  # not a declared split
    splits = {"train": "training", "test": "testing"}
    if kind == "folder":
        source = FolderSource(write_folder(tmp_path / "cifar", files), splits=splits)
    else:
        source = ZipSource(write_zip(tmp_path / "cifar.zip", files), splits=splits)
    loaded = exact_loader().load(source, progress=False)
    assert len(loaded.names) == 10
    assert "extra/cat/x.png" not in loaded.names
    assert loaded.splits.count("train") == 6 and loaded.splits.count("test") == 4
    for name, label, split in zip(loaded.names, loaded.labels, loaded.splits, strict=True):
        folder, cls, file = name.split("/")
        assert (splits[split], label) == (folder, cls)
        assert file.startswith(split)
    for image, name in zip(loaded.data, loaded.names, strict=True):
        np.testing.assert_array_equal(image, expected_image(files[name]))


def test_more_images_than_a_chunk_stay_aligned_with_their_labels(tmp_path: Path):
    n = CHUNK + 45
    files = {}
    for i in range(n):
        image = np.full((4, 4), i % 251, np.uint8)
        files[f"class{i % 3}/{i:05d}.png"] = encode(image, ".png")
    loader = SimpleDatasetLoader(ImageDecoder(1), [ImageToArrayPreprocessor()], workers=4)
    loaded = loader.load(FolderSource(write_folder(tmp_path, files)), progress=False)
    assert loaded.data.shape == (n, 4, 4, 1)
    for image, name, label in zip(loaded.data, loaded.names, loaded.labels, strict=True):
        i = int(Path(name).stem)
        assert label == f"class{i % 3}"
        assert (image == i % 251).all(), name


def test_images_of_different_sizes_need_a_resize(tmp_path: Path):
    files = {
        "a/0.png": encode(blob_image(0, size=10), ".png"),
        "a/1.png": encode(blob_image(0, size=12), ".png"),
    }
    with pytest.raises(ValueError, match="add a SimplePreprocessor"):
        SimpleDatasetLoader(workers=1).load(
            FolderSource(write_folder(tmp_path, files)), progress=False
        )


def test_empty_tree_loads_nothing(tmp_path: Path):
    loaded = exact_loader().load(FolderSource(tmp_path), progress=False)
    assert len(loaded.data) == 0
    assert loaded.labels == loaded.names == loaded.splits == []
    assert loaded.rejects == []


def test_missing_folder_and_broken_archive_fail_early(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        FolderSource(tmp_path / "nowhere")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 this is no zip")
    with pytest.raises(zipfile.BadZipFile):
        ZipSource(tmp_path / "broken.zip")


def test_loader_defaults_to_one_worker_per_core():
    assert SimpleDatasetLoader().workers == (os.cpu_count() or 1)
    assert SimpleDatasetLoader(workers=3).workers == 3


# --- layout_entries --------------------------------------------------------------------------


def test_layout_entries_class_per_folder_sorted_and_filtered():
    paths = ["dogs/b.jpg", "cats/a.jpg", "top.txt", "cats/sub/c.jpg", "dogs/a.jpg"]
    assert layout_entries(paths) == [
        Entry("cats/a.jpg", "cats"),
        Entry("dogs/a.jpg", "dogs"),
        Entry("dogs/b.jpg", "dogs"),
    ]


def test_layout_entries_root_prefix_is_required_and_kept_in_names():
    paths = ["animals/cats/a.jpg", "other/cats/b.jpg", "animalsX/cats/c.jpg", "animals/x.txt"]
    assert layout_entries(paths, root="animals") == [Entry("animals/cats/a.jpg", "cats")]


def test_layout_entries_nested_class_mapping():
    paths = [
        "S/positives/positives7/1.jpg",
        "S/positives/1.jpg",
        "S/negatives/negatives7/2.jpg",
        "S/negatives/negatives7/deeper/3.jpg",
    ]
    classes = {"positives/positives7": "smiling", "negatives/negatives7": "not_smiling"}
    assert layout_entries(paths, root="S", classes=classes) == [
        Entry("S/negatives/negatives7/2.jpg", "not_smiling"),
        Entry("S/positives/positives7/1.jpg", "smiling"),
    ]


def test_layout_entries_split_mapping_goes_from_split_name_to_folder():
    paths = ["tr/cat/1.png", "te/dog/2.png", "val/dog/3.png", "tr/4.png"]
    assert layout_entries(paths, splits={"train": "tr", "test": "te"}) == [
        Entry("te/dog/2.png", "dog", "test"),
        Entry("tr/cat/1.png", "cat", "train"),
    ]

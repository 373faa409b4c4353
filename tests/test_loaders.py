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
    Reject,
    SimpleDatasetLoader,
    ZipSource,
    layout_entries,
)
from dl4cv.preprocessing import ImageDecoder, ImageToArrayPreprocessor, SimplePreprocessor
from dl4cv.runtime.errors import DatasetError
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


def good_and_bad_tree() -> tuple[dict[str, bytes], set[str], set[str], set[str]]:
    """Class folders with good JPEG/PNG images of several sizes, four kinds of bad file, and
    files outside the class folders."""
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
    return {**good, **bad, **outside}, set(good), set(bad), set(outside)


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
    files, good, bad, outside = good_and_bad_tree()
    source = source_for(kind, tmp_path, files)
    loaded = exact_loader().load(source, progress=False)
    prefix = "" if kind == "folder" else "animals/"

    assert isinstance(loaded, LoadedImages)
    assert sorted(loaded.names) == sorted(prefix + n for n in good)
    assert sorted(r.name for r in loaded.rejects) == sorted(prefix + n for n in bad | outside)
    assert len(loaded.data) + len(loaded.rejects) == len(files)  # nothing silently lost
    assert loaded.classes == {c: [f"{prefix}{c}/"] for c in ("cats", "dogs", "panda")}
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
    for name in outside:
        assert reasons[name] == f"not in a class folder ({prefix}<class>/<file>)"


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_loader_with_fast_decode_and_gray_output(tmp_path: Path, kind: str):
    files, good, bad, outside = good_and_bad_tree()
    loader = SimpleDatasetLoader(
        ImageDecoder(1, (SIZE, SIZE)), [SimplePreprocessor(SIZE, SIZE), ImageToArrayPreprocessor()]
    )
    loaded = loader.load(source_for(kind, tmp_path, files), progress=False)
    assert loaded.data.shape == (len(good), SIZE, SIZE, 1)
    assert len(loaded.rejects) == len(bad) + len(outside)
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
    assert {r.name: r.reason for r in loaded.rejects} == {
        "SMILEsmileD-master/README.md": f"outside the dataset's root folder {root}/",
        f"{root}/negatives/negatives7/broken.jpg": "DecodeError: not a decodable image "
        "(corrupt or unsupported format)",
        f"{root}/positives/list.txt": "not in a declared class folder (negatives/negatives7/, "
        "positives/positives7/)",
    }


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
    with pytest.raises(DatasetError) as info:
        ZipSource(tmp_path / "broken.zip")
    assert (
        str(info.value)
        == f"{tmp_path / 'broken.zip'}: not a valid zip archive (File is not a zip file)"
    )


def test_loader_defaults_to_one_worker_per_core():
    assert SimpleDatasetLoader().workers == (os.cpu_count() or 1)
    assert SimpleDatasetLoader(workers=3).workers == 3


# --- layout_entries --------------------------------------------------------------------------


def test_layout_entries_class_per_folder_sorted_and_filtered():
    paths = ["dogs/b.jpg", "cats/a.jpg", "top.txt", "cats/sub/c.jpg", "dogs/a.jpg"]
    layout = layout_entries(paths)
    assert layout.entries == [
        Entry("cats/a.jpg", "cats"),
        Entry("dogs/a.jpg", "dogs"),
        Entry("dogs/b.jpg", "dogs"),
    ]
    outside = "not in a class folder (<class>/<file>)"
    assert layout.rejects == [Reject("cats/sub/c.jpg", outside), Reject("top.txt", outside)]
    assert layout.classes == {"cats": ["cats/"], "dogs": ["dogs/"]}


def test_layout_entries_root_prefix_is_required_and_kept_in_names():
    paths = ["animals/cats/a.jpg", "other/cats/b.jpg", "animalsX/cats/c.jpg", "animals/x.txt"]
    layout = layout_entries(paths, root="animals")
    assert layout.entries == [Entry("animals/cats/a.jpg", "cats")]
    assert {r.name: r.reason for r in layout.rejects} == {
        "animals/x.txt": "not in a class folder (animals/<class>/<file>)",
        "animalsX/cats/c.jpg": "outside the dataset's root folder animals/",
        "other/cats/b.jpg": "outside the dataset's root folder animals/",
    }


def test_layout_entries_nested_class_mapping():
    paths = [
        "S/positives/positives7/1.jpg",
        "S/positives/1.jpg",
        "S/negatives/negatives7/2.jpg",
        "S/negatives/negatives7/deeper/3.jpg",
    ]
    classes = {"positives/positives7": "smiling", "negatives/negatives7": "not_smiling"}
    layout = layout_entries(paths, root="S", classes=classes)
    assert layout.entries == [
        Entry("S/negatives/negatives7/2.jpg", "not_smiling"),
        Entry("S/positives/positives7/1.jpg", "smiling"),
    ]
    assert [r.name for r in layout.rejects] == [
        "S/negatives/negatives7/deeper/3.jpg",
        "S/positives/1.jpg",
    ]
    assert layout.classes == {
        "not_smiling": ["S/negatives/negatives7/"],
        "smiling": ["S/positives/positives7/"],
    }


def test_layout_entries_split_mapping_goes_from_split_name_to_folder():
    paths = ["tr/cat/1.png", "te/dog/2.png", "val/dog/3.png", "tr/4.png"]
    layout = layout_entries(paths, splits={"train": "tr", "test": "te"})
    assert layout.entries == [
        Entry("te/dog/2.png", "dog", "test"),
        Entry("tr/cat/1.png", "cat", "train"),
    ]
    assert {r.name: r.reason for r in layout.rejects} == {
        "tr/4.png": "not in a class folder (<split>/<class>/<file>)",
        "val/dog/3.png": "not in a split folder (te/, tr/)",
    }


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("/etc/x.jpg", "unsafe name: an absolute path"),
        ("/animals/cats/x.jpg", "unsafe name: an absolute path"),
        ("C:/animals/cats/x.jpg", "unsafe name: an absolute path"),
        ("../x.jpg", "unsafe name: climbs out of the tree with '..'"),
        ("animals/../../x.jpg", "unsafe name: climbs out of the tree with '..'"),
        ("animals/cats/../../../etc/x.jpg", "unsafe name: climbs out of the tree with '..'"),
        ("animals\\..\\..\\x.jpg", "unsafe name: climbs out of the tree with '..'"),
        ("animals/./cats/x.jpg", "unsafe name: a '.' or empty path component"),
        ("animals//cats/x.jpg", "unsafe name: a '.' or empty path component"),
    ],
)
def test_layout_entries_rejects_names_that_could_point_outside_the_tree(name: str, reason: str):
    layout = layout_entries(["animals/cats/a.jpg", name], root="animals")
    assert layout.entries == [Entry("animals/cats/a.jpg", "cats")]
    assert layout.rejects == [Reject(name, reason)]
    layout = layout_entries(["cats/a.jpg", name])  # no root: `..` would otherwise be a class
    assert layout.rejects == [Reject(name, reason)]
    assert list(layout.classes) == ["cats"]


def test_layout_entries_sees_empty_and_missing_class_folders():
    paths = ["animals/", "animals/cats/", "animals/cats/a.jpg", "animals/zebra/", "notes/"]
    layout = layout_entries(paths, root="animals")
    assert layout.entries == [Entry("animals/cats/a.jpg", "cats")]
    assert layout.rejects == []  # folders are not files: nothing to list
    assert layout.classes == {"cats": ["animals/cats/"], "zebra": ["animals/zebra/"]}
    declared = layout_entries(
        ["S/tr/pos/1.jpg"], root="S", splits={"train": "tr"}, classes={"pos": "p", "neg": "n"}
    )
    assert declared.classes == {"n": ["S/tr/neg/"], "p": ["S/tr/pos/"]}


def test_zip_members_outside_the_class_folders_are_rejected_and_never_written(tmp_path: Path):
    """Names that climb out or are absolute are listed as rejects; the archive is read in
    place, so nothing appears where those names point."""
    escape = tmp_path / "escaped.png"
    image = encode(blob_image(0, size=SIZE), ".png")
    members = {
        "animals/cats/a.png": image,
        "animals/cats/../../escaped.png": image,
        str(escape): image,  # an absolute name
        "animals/README.md": b"readme",
    }
    path = write_zip(tmp_path / "a.zip", members)
    before = sorted(tmp_path.rglob("*"))
    loaded = exact_loader().load(ZipSource(path, root="animals"), progress=False)
    assert loaded.names == ["animals/cats/a.png"]
    assert {r.name: r.reason for r in loaded.rejects} == {
        str(escape): "unsafe name: an absolute path",
        "animals/cats/../../escaped.png": "unsafe name: climbs out of the tree with '..'",
        "animals/README.md": "not in a class folder (animals/<class>/<file>)",
    }
    assert sorted(tmp_path.rglob("*")) == before
    assert not escape.exists()


def test_zip_member_name_used_twice_is_rejected_not_silently_shadowed(tmp_path: Path):
    first = encode(blob_image(0, size=SIZE, seed=1), ".png")
    second = encode(blob_image(0, size=SIZE, seed=2), ".png")
    path = tmp_path / "dup.zip"
    with zipfile.ZipFile(path, "w") as archive, pytest.warns(UserWarning, match="Duplicate"):
        archive.writestr("cats/a.png", first)
        archive.writestr("cats/a.png", second)
    loaded = exact_loader().load(ZipSource(path), progress=False)
    assert loaded.names == ["cats/a.png"]
    np.testing.assert_array_equal(loaded.data[0], expected_image(second))
    assert loaded.rejects == [
        Reject("cats/a.png", "a second member of this name: only the last is read")
    ]


def test_empty_class_folder_in_a_zip_is_a_class_without_images(tmp_path: Path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("cats/a.png", encode(blob_image(0, size=SIZE), ".png"))
        archive.writestr(zipfile.ZipInfo("zebra/"), b"")
    loaded = exact_loader().load(ZipSource(path), progress=False)
    assert loaded.labels == ["cats"]
    assert loaded.classes == {"cats": ["cats/"], "zebra": ["zebra/"]}


def test_empty_class_folder_on_disk_is_a_class_without_images(tmp_path: Path):
    write_folder(tmp_path, {"cats/a.png": encode(blob_image(0, size=SIZE), ".png")})
    (tmp_path / "zebra").mkdir()
    loaded = exact_loader().load(FolderSource(tmp_path), progress=False)
    assert loaded.classes == {"cats": ["cats/"], "zebra": ["zebra/"]}

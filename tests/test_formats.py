"""read_raw on tiny archives of every supported format, built by the tests in the real layouts."""

from __future__ import annotations

import csv
import io
import pickle
import tarfile
import zipfile
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.datasets import load_digits

from dl4cv.config import Dataset, ImageSpec, Preprocess, Source, SplitSpec
from dl4cv.data.formats import ProcessedDataset, read_raw, write_rejects
from dl4cv.data.loaders import Reject
from dl4cv.data.sources import DownloadError, Fetched, fetch, sha256sum
from dl4cv.runtime.errors import DatasetError
from tests.conftest import blob_image, encode, make_image_zip

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer"]
OPTIONS = Preprocess(interpolation="area", fast_decode=False, workers=2)


def describe(path: Path, **source) -> Fetched:
    """The descriptor the download stage would have written for `path`."""
    return Fetched(
        path.parent.name,
        path.name,
        sha256sum(path),
        "official",
        f"https://example.org/{path.name}",
        asdict(Source(**source)),
    )


def read(fetched: Fetched, raw_dir: Path, image: ImageSpec) -> ProcessedDataset:
    return read_raw(fetched, raw_dir, image, OPTIONS, progress=False)


# --- keras-npz ----------------------------------------------------------------------------------


def make_keras_npz(path: Path, n_train: int = 5, n_test: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    arrays["y_train"][0] = 9  # so the class list is 0..9 whatever the draw
    np.savez(path, **arrays)
    return arrays


def test_keras_npz_keeps_images_labels_and_origin(tmp_path: Path):
    arrays = make_keras_npz(tmp_path / "mnist.npz")
    data = read(
        describe(tmp_path / "mnist.npz", format="keras-npz"), tmp_path, ImageSpec(28, 28, 1)
    )
    assert data.images.shape == (8, 28, 28, 1) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(
        data.images[..., 0], np.concatenate([arrays["x_train"], arrays["x_test"]])
    )
    np.testing.assert_array_equal(
        data.labels, np.concatenate([arrays["y_train"], arrays["y_test"]])
    )
    assert data.labels.dtype == np.int64
    assert data.origin == ["train"] * 5 + ["test"] * 3
    assert data.classes == [str(c) for c in range(10)]
    assert len(set(data.ids)) == 8
    assert data.rejects == []


def test_keras_npz_resized_and_expanded_to_three_channels(tmp_path: Path):
    arrays = make_keras_npz(tmp_path / "mnist.npz")
    data = read(
        describe(tmp_path / "mnist.npz", format="keras-npz"), tmp_path, ImageSpec(14, 14, 3)
    )
    assert data.images.shape == (8, 14, 14, 3)
    expected = cv2.resize(arrays["x_train"][0], (14, 14), interpolation=cv2.INTER_AREA)
    for c in range(3):
        np.testing.assert_array_equal(data.images[0, :, :, c], expected)


# --- cifar10-python -----------------------------------------------------------------------------


def cifar_batch(rgb: np.ndarray, labels: list[int]) -> bytes:
    """One pickled batch in the official layout: rows of 1024 R, then 1024 G, then 1024 B."""
    planar = rgb.transpose(0, 3, 1, 2).reshape(len(rgb), 3072)
    return pickle.dumps(
        {b"batch_label": b"batch", b"labels": labels, b"data": planar, b"filenames": []}
    )


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_cifar_tar(path: Path, per_batch: int = 2, n_test: int = 3) -> tuple[np.ndarray, list]:
    """A tiny cifar-10-python.tar.gz; returns all RGB images and labels in official order."""
    rng = np.random.default_rng(1)
    images, labels = [], []
    with tarfile.open(path, "w:gz") as tar:
        add_member(tar, "cifar-10-batches-py/readme.html", b"<html></html>")
        meta = {b"label_names": [c.encode() for c in CIFAR_CLASSES], b"num_vis": 3072}
        add_member(tar, "cifar-10-batches-py/batches.meta", pickle.dumps(meta))
        for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [
            ("test_batch", n_test)
        ]:
            rgb = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            if name == "data_batch_1":
                rgb[0] = (255, 0, 0)  # pure red in RGB
            y = rng.integers(0, len(CIFAR_CLASSES), n).tolist()
            add_member(tar, f"cifar-10-batches-py/{name}", cifar_batch(rgb, y))
            images.append(rgb)
            labels += y
    return np.concatenate(images), labels


def test_cifar10_python_archive_is_read_in_bgr(tmp_path: Path):
    rgb, labels = make_cifar_tar(tmp_path / "cifar-10-python.tar.gz")
    fetched = describe(tmp_path / "cifar-10-python.tar.gz", format="cifar10-python")
    data = read(fetched, tmp_path, ImageSpec(32, 32, 3))
    assert data.images.shape == (13, 32, 32, 3)
    assert data.images.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(data.images[0, 5, 7], [0, 0, 255])  # red, in BGR order
    assert (data.images[0] == (0, 0, 255)).all()
    np.testing.assert_array_equal(data.images, rgb[..., ::-1])
    np.testing.assert_array_equal(data.labels, labels)
    assert data.classes == CIFAR_CLASSES
    assert data.origin.count("train") == 10 and data.origin.count("test") == 3
    assert data.origin == ["train"] * 10 + ["test"] * 3
    assert data.ids[0] == "train/0" and data.ids[9] == "train/9"
    assert data.ids[10] == "test/0" and data.ids[-1] == "test/2"  # index within its own part


def test_cifar10_python_to_gray(tmp_path: Path):
    rgb, _ = make_cifar_tar(tmp_path / "c.tar.gz")
    data = read(
        describe(tmp_path / "c.tar.gz", format="cifar10-python"), tmp_path, ImageSpec(32, 32, 1)
    )
    assert data.images.shape == (13, 32, 32, 1)
    np.testing.assert_array_equal(
        data.images[3, :, :, 0], cv2.cvtColor(np.ascontiguousarray(rgb[3]), cv2.COLOR_RGB2GRAY)
    )


def test_cifar10_python_archive_missing_batches_is_rejected(tmp_path: Path):
    path = tmp_path / "c.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        add_member(
            tar,
            "cifar-10-batches-py/test_batch",
            cifar_batch(np.zeros((1, 32, 32, 3), np.uint8), [0]),
        )
    with pytest.raises(DatasetError, match=r"not a CIFAR-10 python archive.*data_batch_1"):
        read(describe(path, format="cifar10-python"), tmp_path, ImageSpec(32, 32, 3))


class _Plant:
    """Unpickling this creates a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def planted_archive(path: Path, marker: Path) -> None:
    with tarfile.open(path, "w:gz") as tar:
        add_member(tar, "cifar-10-batches-py/data_batch_1", pickle.dumps(_Plant(marker)))


def test_tampered_archive_is_refused_before_any_unpickling(tmp_path: Path):
    path = tmp_path / "cifar-10-python.tar.gz"
    make_cifar_tar(path)
    fetched = describe(path, format="cifar10-python")  # the verified download
    marker = tmp_path / "PWNED"
    planted_archive(path, marker)  # then the file is swapped
    with pytest.raises(DownloadError, match="differs from the verified") as info:
        read(fetched, tmp_path, ImageSpec(32, 32, 3))
    assert sha256sum(path) in str(info.value)
    assert not marker.exists()


def test_planted_pickle_would_run_if_its_checksum_were_trusted(tmp_path: Path):
    # the control for the test above: the same archive, declared with its own checksum, is
    # unpickled and plants the marker. So only the checksum check kept the marker away.
    path = tmp_path / "cifar-10-python.tar.gz"
    marker = tmp_path / "PWNED"
    planted_archive(path, marker)
    with pytest.raises(DatasetError, match="not a readable CIFAR-10 python archive"):
        read(describe(path, format="cifar10-python"), tmp_path, ImageSpec(32, 32, 3))
    assert marker.exists()


# --- image zips -------------------------------------------------------------------------------


def test_image_folder_zip_with_rejects(tmp_path: Path):
    garbage = np.random.default_rng(2).integers(0, 256, 900, np.uint8).tobytes()
    extra = {
        "animals/cats/corrupt.jpg": garbage,
        "animals/dogs/empty.jpg": b"",
        "animals/readme.txt": b"not in a class folder",
        "elsewhere/cats/x.jpg": encode(blob_image(0)),
    }
    path = make_image_zip(tmp_path / "animals.zip", "animals", 3, ["cats", "dogs", "panda"], extra)
    fetched = describe(path, format="image-folder-zip", root="animals")
    data = read(fetched, tmp_path, ImageSpec(16, 16, 3))
    assert data.images.shape == (9, 16, 16, 3)
    assert data.classes == ["cats", "dogs", "panda"]
    for image_id, label in zip(data.ids, data.labels, strict=True):
        assert data.classes[label] == image_id.split("/")[1]
    assert np.bincount(data.labels).tolist() == [3, 3, 3]
    assert {r.name: r.reason.split(":")[0] for r in data.rejects} == {
        "animals/cats/corrupt.jpg": "DecodeError",
        "animals/dogs/empty.jpg": "DecodeError",
        "animals/readme.txt": "not in a class folder (animals/<class>/<file>)",
        "elsewhere/cats/x.jpg": "outside the dataset's root folder animals/",
    }
    assert data.origin == [""] * 9
    # each image is the INTER_AREA resize of its decoded file
    with zipfile.ZipFile(path) as archive:
        raw = archive.read(data.ids[4])
    expected = cv2.resize(
        cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR),
        (16, 16),
        interpolation=cv2.INTER_AREA,
    )
    np.testing.assert_array_equal(data.images[4], expected)


def smiles_zip(path: Path, negatives: dict[str, bytes] | None = None) -> Fetched:
    """S/{train,test}/pos/ with two images each, S/train/neg/ holding `negatives`."""
    with zipfile.ZipFile(path, "w") as archive:
        for split in ("train", "test"):
            for i in range(2):
                img = encode(blob_image(i, size=24, seed=i, channels=1))
                archive.writestr(f"S/{split}/pos/{i}.jpg", img)
        for name, data in (negatives or {}).items():
            archive.writestr(f"S/train/neg/{name}", data)
    return describe(
        path,
        format="smiles-github-zip",
        root="S",
        splits={"train": "train", "test": "test"},
        classes={"pos": "smiling", "neg": "not_smiling"},
    )


def test_image_zip_with_splits_and_declared_classes(tmp_path: Path):
    negative = encode(blob_image(3, size=24, seed=9, channels=1))
    data = read(smiles_zip(tmp_path / "smiles.zip", {"0.jpg": negative}), tmp_path, GRAY12)
    assert data.classes == ["not_smiling", "smiling"]  # sorted, whatever the archive's order
    assert data.labels.tolist() == [1, 1, 0, 1, 1]
    assert data.images.shape == (5, 12, 12, 1)
    assert sorted(data.origin) == ["test", "test", "train", "train", "train"]
    for image_id, origin in zip(data.ids, data.origin, strict=True):
        assert image_id.split("/")[1] == origin


GRAY12 = ImageSpec(12, 12, 1)


def test_declared_class_without_a_single_file_is_an_error(tmp_path: Path):
    path = tmp_path / "smiles.zip"
    with pytest.raises(DatasetError) as info:
        read(smiles_zip(path), tmp_path, GRAY12)
    assert str(info.value) == (
        f"{path}: class 'not_smiling' has no usable image: no file in S/test/neg/, S/train/neg/; "
        "each class needs at least one"
    )


def test_class_whose_every_file_is_rejected_is_an_error_naming_the_first_reason(tmp_path: Path):
    path = tmp_path / "smiles.zip"
    with pytest.raises(DatasetError) as info:
        read(smiles_zip(path, {"a.jpg": b"", "b.jpg": b"garbage"}), tmp_path, GRAY12)
    assert str(info.value) == (
        f"{path}: class 'not_smiling' has no usable image: all 2 files in "
        "S/train/neg/ were rejected (first: S/train/neg/a.jpg: DecodeError: empty file); "
        "each class needs at least one"
    )


def test_empty_class_folder_is_an_error(tmp_path: Path):
    path = make_image_zip(tmp_path / "animals.zip", "animals", 2, ["cats", "dogs"])
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(zipfile.ZipInfo("animals/panda/"), b"")
    with pytest.raises(DatasetError) as info:
        read(describe(path, format="image-folder-zip", root="animals"), tmp_path, COLOUR16)
    assert str(info.value) == (
        f"{path}: class 'panda' has no usable image: no file in animals/panda/; "
        "each class needs at least one"
    )


COLOUR16 = ImageSpec(16, 16, 3)


def test_image_zip_without_any_image_is_an_error(tmp_path: Path):
    path = make_image_zip(tmp_path / "a.zip", "animals", 2, ["cats"])
    fetched = describe(path, format="image-folder-zip", root="wrong-root")
    with pytest.raises(DatasetError, match="no images found"):
        read(fetched, tmp_path, COLOUR16)


def test_verified_file_that_is_not_a_zip_is_one_clear_error(tmp_path: Path):
    path = tmp_path / "animals.zip"
    path.write_bytes(np.random.default_rng(5).integers(0, 256, 5000, np.uint8).tobytes())
    fetched = describe(path, format="image-folder-zip", root="animals")  # its sha256 matches
    with pytest.raises(DatasetError) as info:
        read(fetched, tmp_path, COLOUR16)
    assert str(info.value) == f"{path}: not a valid zip archive (File is not a zip file)"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"not an npz at all", "not a keras-npz file (not an .npz archive of arrays)"),
        ("zip-without-x_test", "not a keras-npz file (no array x_test, y_test)"),
    ],
)
def test_keras_npz_that_is_not_the_expected_arrays_is_one_clear_error(
    tmp_path: Path, content: bytes | str, expected: str
):
    path = tmp_path / "mnist.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        rng = np.random.default_rng(0)
        np.savez(path, x_train=rng.integers(0, 9, (2, 4, 4)), y_train=np.arange(2))
    with pytest.raises(DatasetError) as info:
        read(describe(path, format="keras-npz"), tmp_path, ImageSpec(28, 28, 1))
    assert str(info.value).startswith(f"{path}: {expected}"), str(info.value)


def test_cifar_archive_that_is_not_a_tar_gz_is_one_clear_error(tmp_path: Path):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(b"\x1f\x8b" + bytes(200))  # a gzip magic number, then nothing sensible
    with pytest.raises(DatasetError, match=r"not a readable CIFAR-10 python archive \("):
        read(describe(path, format="cifar10-python"), tmp_path, ImageSpec(32, 32, 3))


def test_dataset_whose_array_would_not_fit_in_memory_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 1024}  # a machine with 4 MiB of memory
    monkeypatch.setattr("dl4cv.data.formats.os.sysconf", pages.__getitem__)
    make_keras_npz(tmp_path / "mnist.npz")  # 8 images
    fetched = describe(tmp_path / "mnist.npz", format="keras-npz")
    assert read(fetched, tmp_path, ImageSpec(28, 28, 1)).images.shape == (8, 28, 28, 1)
    with pytest.raises(DatasetError) as info:
        read(fetched, tmp_path, ImageSpec(1024, 1024, 1))
    assert str(info.value) == (
        f"{tmp_path / 'mnist.npz'}: 8 images of 1024x1024x1 need 16.0 MiB of memory (the array "
        "and the images it is stacked from), more than this machine's 4.0 MiB; lower "
        f"datasets.{tmp_path.name}.image.width and height"
    )
    zipped = make_image_zip(tmp_path / "a.zip", "animals", 8, ["cats"])
    with pytest.raises(DatasetError, match="8 images of 1024x1024x1 need"):
        read(
            describe(zipped, format="image-folder-zip", root="animals"),
            tmp_path,
            ImageSpec(1024, 1024, 1),
        )


# --- sklearn digits, unknown formats ------------------------------------------------------------


def test_sklearn_digits_are_scaled_to_the_full_pixel_range(tmp_path: Path):
    dataset = Dataset(
        "digits", Source(format="sklearn-digits"), ImageSpec(8, 8, 1), SplitSpec("random")
    )
    fetched = fetch(dataset, tmp_path)
    data = read(fetched, tmp_path, ImageSpec(8, 8, 1))
    digits = load_digits()
    assert data.images.shape == (len(digits.target), 8, 8, 1)
    assert data.images.max() == 255 and data.images.min() == 0
    np.testing.assert_array_equal(
        data.images[..., 0], np.rint(digits.images * 255 / 16).astype(np.uint8)
    )
    np.testing.assert_array_equal(data.labels, digits.target)
    assert data.origin == [""] * len(digits.target)


def test_unsupported_format_is_an_error(tmp_path: Path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"data")
    fetched = Fetched("x", "x.bin", sha256sum(path), "official", "u", {"format": "hdf5"})
    with pytest.raises(DownloadError, match="unsupported dataset format 'hdf5'"):
        read(fetched, tmp_path, ImageSpec(8, 8, 1))


# --- ProcessedDataset, rejects -----------------------------------------------------------------


def test_processed_dataset_save_load_round_trip(tmp_path: Path):
    rng = np.random.default_rng(3)
    original = ProcessedDataset(
        images=rng.integers(0, 256, (4, 6, 5, 3), dtype=np.uint8),
        labels=np.array([2, 0, 1, 2], dtype=np.int64),
        classes=["chat", "chien", "panda géant"],
        ids=["train/0", "train/1", "test/2", "test/3"],
        origin=["train", "train", "test", "test"],
        rejects=[Reject("x.jpg", "bad")],
    )
    path = tmp_path / "processed" / "pets.npz"
    original.save(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["pets.npz"]  # no temp file left
    loaded = ProcessedDataset.load(path)
    np.testing.assert_array_equal(loaded.images, original.images)
    assert loaded.images.dtype == np.uint8
    np.testing.assert_array_equal(loaded.labels, original.labels)
    assert loaded.labels.dtype == np.int64
    assert loaded.classes == original.classes
    assert loaded.ids == original.ids
    assert loaded.origin == original.origin
    assert all(isinstance(c, str) for c in loaded.classes + loaded.ids + loaded.origin)
    assert loaded.rejects == []  # rejects live in their own CSV file


def test_processed_dataset_load_missing_says_what_to_run(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="run the preprocess stage"):
        ProcessedDataset.load(tmp_path / "nope.npz")


def test_damaged_processed_dataset_is_one_clear_error(tmp_path: Path):
    path = tmp_path / "animals.npz"
    path.write_bytes(b"PK\x03\x04 cut short")  # a zip's first bytes, then nothing
    with pytest.raises(DatasetError, match=r"animals\.npz: not a processed dataset file \(a dam"):
        ProcessedDataset.load(path)
    np.savez(path, labels=np.arange(3))
    with pytest.raises(DatasetError) as info:
        ProcessedDataset.load(path)
    assert str(info.value) == (
        f"{path}: not a processed dataset file (no array images, classes, ids, origin)"
    )


def test_write_rejects_csv_content(tmp_path: Path):
    rejects = [
        Reject("animals/cats/a.jpg", "DecodeError: empty file"),
        Reject("animals/dogs/b, c.jpg", 'error: "quoted", with comma\nand newline'),
    ]
    path = tmp_path / "reports" / "rejects.csv"
    write_rejects(path, rejects)
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [["file", "reason"]] + [[r.name, r.reason] for r in rejects]
    write_rejects(path, [])
    with open(path, newline="") as fh:
        assert list(csv.reader(fh)) == [["file", "reason"]]

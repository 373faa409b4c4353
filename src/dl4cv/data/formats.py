"""Read a downloaded dataset file, whatever its format, into one in-memory layout.

Every format ends as `ProcessedDataset`: uint8 images (N, H, W, C) in OpenCV's BGR order, integer
labels, class names, a stable id per image and the dataset's own split where it has one. The
file's checksum is verified again before it is opened, so a pickle (CIFAR-10) is never
unpickled unless it is byte for byte the file that was declared.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import os
import pickle
import tarfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dl4cv.config import IMAGE_ZIPS, ImageSpec, Preprocess
from dl4cv.data.loaders import LoadedImages, Reject, SimpleDatasetLoader, ZipSource
from dl4cv.data.npz import PROCESSED, read_npz
from dl4cv.data.sources import DownloadError, Fetched, sha256sum
from dl4cv.preprocessing import ImageDecoder, ImageToArrayPreprocessor, SimplePreprocessor
from dl4cv.runtime.errors import DatasetError
from dl4cv.runtime.fileio import atomic_path, write_text

log = logging.getLogger(__name__)


@dataclass
class ProcessedDataset:
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    ids: list[str]
    origin: list[str]  # "train"/"test" for datasets with an official split, else ""
    rejects: list[Reject] = field(default_factory=list)

    def save(self, path: Path) -> None:
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(
                tmp,
                images=self.images,
                labels=self.labels,
                classes=np.array(self.classes),
                ids=np.array(self.ids),
                origin=np.array(self.origin),
            )

    @classmethod
    def load(cls, path: Path) -> ProcessedDataset:
        if not path.exists():
            raise FileNotFoundError(f"{path}: missing; run the preprocess stage first (dvc repro)")
        arrays = read_npz(path, PROCESSED, ["images", "labels", "classes", "ids", "origin"])
        return cls(
            arrays["images"],
            arrays["labels"],
            arrays["classes"].tolist(),
            arrays["ids"].tolist(),
            arrays["origin"].tolist(),
        )


def write_rejects(path: Path, rejects: list[Reject]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "reason"])
    writer.writerows([r.name, r.reason] for r in rejects)
    write_text(path, buffer.getvalue())


def read_raw(
    fetched: Fetched, raw_dir: Path, image: ImageSpec, options: Preprocess, progress: bool = True
) -> ProcessedDataset:
    path = raw_dir / fetched.file
    actual = sha256sum(path)
    if actual != fetched.sha256:
        raise DownloadError(
            f"{path}: sha256 {actual} differs from the verified {fetched.sha256}; "
            "rerun the download stage"
        )
    source = fetched.source
    fmt = source["format"]
    if fmt in IMAGE_ZIPS:
        return _read_image_zip(path, source, image, options, progress, fetched.dataset)
    if fmt == "keras-npz":
        arrays = read_npz(path, fmt, ["x_train", "y_train", "x_test", "y_test"])
        x = np.concatenate([arrays["x_train"], arrays["x_test"]])
        y = np.concatenate([arrays["y_train"], arrays["y_test"]]).reshape(-1)
        origin = ["train"] * len(arrays["x_train"]) + ["test"] * len(arrays["x_test"])
        classes = [str(c) for c in range(int(y.max()) + 1)]
    elif fmt == "cifar10-python":
        x, y, classes, origin = _read_cifar10_python(path)
    elif fmt == "sklearn-digits":
        arrays = read_npz(path, fmt, ["images", "labels"])
        # 0..16 intensities: a min-max scale to 0..255 keeps one pixel convention everywhere.
        x = np.rint(arrays["images"].astype(np.float32) * (255 / 16)).astype(np.uint8)
        y, classes, origin = arrays["labels"], [str(c) for c in range(10)], [""] * len(x)
    else:
        raise DownloadError(f"{raw_dir}: unsupported dataset format {fmt!r}")
    check_fits_in_memory(path, len(x), image, fetched.dataset)
    return _from_arrays(x, y, classes, origin, image, options)


def check_fits_in_memory(path: Path, count: int, image: ImageSpec, dataset: str) -> None:
    """Refuse, before decoding anything, a dataset whose array could not be held in memory:
    its N x height x width x channels bytes, with as much again for the decoded images it is
    stacked from, must fit in this machine's physical memory."""
    need = 2 * count * image.width * image.height * image.channels
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise DatasetError(
            f"{path}: {count} images of {image.width}x{image.height}x{image.channels} need "
            f"{_size(need)} of memory (the array and the images it is stacked from), more "
            f"than this machine's {_size(have)}; lower datasets.{dataset}.image.width and height"
        )


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _read_image_zip(
    path: Path, source: dict, image: ImageSpec, options: Preprocess, progress: bool, dataset: str
) -> ProcessedDataset:
    loader = SimpleDatasetLoader(
        ImageDecoder(image.channels, (image.width, image.height), options.fast_decode),
        [
            SimplePreprocessor(image.width, image.height, options.interpolation),
            ImageToArrayPreprocessor(),
        ],
        workers=options.workers,
    )
    zsource = ZipSource(path, source.get("root"), source.get("splits"), source.get("classes"))
    check_fits_in_memory(path, len(zsource.layout().entries), image, dataset)
    loaded = loader.load(zsource, progress=progress)
    if not loaded.labels:
        raise DatasetError(f"{path}: no images found under the declared class folders")
    _check_every_class_has_images(path, loaded)
    classes = sorted(loaded.classes)
    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index[label] for label in loaded.labels], dtype=np.int64)
    return ProcessedDataset(
        loaded.data, labels, classes, loaded.names, loaded.splits, loaded.rejects
    )


def _check_every_class_has_images(path: Path, loaded: LoadedImages) -> None:
    """A class without a single image (an empty or missing folder, or every file in it
    rejected) cannot be learnt, nor stratified, nor weighted: say which, rather than train
    a model with an output that never fires."""
    counts = Counter(loaded.labels)
    for label, folders in loaded.classes.items():
        if counts[label]:
            continue
        rejected = [r for r in loaded.rejects if r.name.startswith(tuple(folders))]
        where = ", ".join(folders)
        detail = (
            f"all {len(rejected)} files in {where} were rejected (first: {rejected[0].name}: "
            f"{rejected[0].reason})"
            if rejected
            else f"no file in {where}"
        )
        raise DatasetError(
            f"{path}: class {label!r} has no usable image: {detail}; each class needs at least one"
        )


CIFAR_BATCHES = {f"data_batch_{i}": "train" for i in range(1, 6)} | {"test_batch": "test"}


def _read_cifar10_python(path: Path) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    try:
        found, classes = _read_cifar10_batches(path)
    except (
        tarfile.TarError,
        gzip.BadGzipFile,
        EOFError,
        zlib.error,
        pickle.UnpicklingError,
        KeyError,
        TypeError,
        AttributeError,
        ValueError,
    ) as exc:
        raise DatasetError(
            f"{path}: not a readable CIFAR-10 python archive ({type(exc).__name__}: {exc})"
        ) from None
    missing = sorted(set(CIFAR_BATCHES) - set(found)) + ([] if classes else ["batches.meta"])
    if missing:
        raise DatasetError(f"{path}: not a CIFAR-10 python archive (missing {missing})")
    order = sorted(CIFAR_BATCHES, key=lambda n: (CIFAR_BATCHES[n] == "test", n))
    x = np.concatenate([found[n][0] for n in order])
    y = np.concatenate([found[n][1] for n in order])
    origin = [CIFAR_BATCHES[n] for n in order for _ in range(len(found[n][1]))]
    return x, y, classes, origin


def _read_cifar10_batches(
    path: Path,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str] | None]:
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    classes: list[str] | None = None
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if name not in CIFAR_BATCHES and name != "batches.meta":
                continue
            with tar.extractfile(member) as fh:  # checksum verified above: trusted pickle
                content = pickle.load(fh, encoding="bytes")
            if name == "batches.meta":
                classes = [c.decode() for c in content[b"label_names"]]
            else:
                data = content[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                found[name] = (data[..., ::-1], np.array(content[b"labels"]))  # RGB -> BGR
    return found, classes


def _from_arrays(
    x: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    origin: list[str],
    image: ImageSpec,
    options: Preprocess,
) -> ProcessedDataset:
    resize = SimplePreprocessor(image.width, image.height, options.interpolation)
    if x.shape[1:3] != (image.height, image.width):
        x = np.stack([resize.preprocess(img) for img in x])
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.shape[-1] != image.channels:
        code = cv2.COLOR_GRAY2BGR if image.channels == 3 else cv2.COLOR_BGR2GRAY
        x = np.stack([ImageToArrayPreprocessor().preprocess(cv2.cvtColor(img, code)) for img in x])
    counters: dict[str, int] = {}
    ids = []
    for part in origin:  # "train/0", "test/0"...: the image's index in its own array
        ids.append(f"{part or 'all'}/{counters.get(part, 0)}")
        counters[part] = counters.get(part, 0) + 1
    return ProcessedDataset(
        np.ascontiguousarray(x, dtype=np.uint8), y.astype(np.int64), classes, ids, origin
    )

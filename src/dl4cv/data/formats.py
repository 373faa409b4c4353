"""Read a downloaded dataset file, whatever its format, into one in-memory layout.

Every format ends as `ProcessedDataset`: uint8 images (N, H, W, C) in OpenCV's BGR order, integer
labels, class names, a stable id per image and the dataset's own split where it has one. The
file's checksum is verified again before it is opened, so a pickle (CIFAR-10) is never
unpickled unless it is byte for byte the file that was declared.
"""

from __future__ import annotations

import csv
import io
import logging
import pickle
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dl4cv.config import ImageSpec, Preprocess
from dl4cv.data.loaders import Reject, SimpleDatasetLoader, ZipSource
from dl4cv.data.sources import DownloadError, Fetched, sha256sum
from dl4cv.data.waiting import raise_if_waiting
from dl4cv.fileio import atomic_path, write_text
from dl4cv.preprocessing import ImageDecoder, ImageToArrayPreprocessor, SimplePreprocessor

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
        with np.load(path, allow_pickle=False) as npz:
            raise_if_waiting(npz)
            return cls(
                npz["images"],
                npz["labels"],
                npz["classes"].tolist(),
                npz["ids"].tolist(),
                npz["origin"].tolist(),
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
    if fmt in ("image-folder-zip", "smiles-github-zip"):
        return _read_image_zip(path, source, image, options, progress)
    if fmt == "keras-npz":
        with np.load(path, allow_pickle=False) as npz:
            x = np.concatenate([npz["x_train"], npz["x_test"]])
            y = np.concatenate([npz["y_train"], npz["y_test"]]).reshape(-1)
            origin = ["train"] * len(npz["x_train"]) + ["test"] * len(npz["x_test"])
        classes = [str(c) for c in range(int(y.max()) + 1)]
        return _from_arrays(x, y, classes, origin, image, options)
    if fmt == "cifar10-python":
        x, y, classes, origin = _read_cifar10_python(path)
        return _from_arrays(x, y, classes, origin, image, options)
    if fmt == "sklearn-digits":
        with np.load(path, allow_pickle=False) as npz:
            # 0..16 intensities: a min-max scale to 0..255 keeps one pixel convention everywhere.
            x = np.rint(npz["images"].astype(np.float32) * (255 / 16)).astype(np.uint8)
            y = npz["labels"]
        return _from_arrays(x, y, [str(c) for c in range(10)], [""] * len(y), image, options)
    raise DownloadError(f"{raw_dir}: unsupported dataset format {fmt!r}")


def _read_image_zip(
    path: Path, source: dict, image: ImageSpec, options: Preprocess, progress: bool
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
    loaded = loader.load(zsource, progress=progress)
    if not loaded.labels:
        raise DownloadError(f"{path}: no images found under the declared class folders")
    classes = sorted(set(loaded.labels) | {r for r in (source.get("classes") or {}).values()})
    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index[label] for label in loaded.labels], dtype=np.int64)
    return ProcessedDataset(
        loaded.data, labels, classes, loaded.names, loaded.splits, loaded.rejects
    )


def _read_cifar10_python(path: Path) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    batches = {f"data_batch_{i}": "train" for i in range(1, 6)} | {"test_batch": "test"}
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    classes: list[str] | None = None
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if name not in batches and name != "batches.meta":
                continue
            with tar.extractfile(member) as fh:  # checksum verified above: trusted pickle
                content = pickle.load(fh, encoding="bytes")
            if name == "batches.meta":
                classes = [c.decode() for c in content[b"label_names"]]
            else:
                data = content[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                found[name] = (data[..., ::-1], np.array(content[b"labels"]))  # RGB -> BGR
    missing = sorted(set(batches) - set(found)) + ([] if classes else ["batches.meta"])
    if missing:
        raise DownloadError(f"{path}: not a CIFAR-10 python archive (missing {missing})")
    order = sorted(batches, key=lambda n: (batches[n] == "test", n))
    x = np.concatenate([found[n][0] for n in order])
    y = np.concatenate([found[n][1] for n in order])
    origin = [batches[n] for n in order for _ in range(len(found[n][1]))]
    return x, y, classes, origin


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

"""captcha_preprocess: cut every labelled digit out of its captcha, pad-and-resize it to the
network's input (the book's 28x28 gray), and save the lot as the dataset `captcha`."""

from __future__ import annotations

import csv
import hashlib
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dl4cv.captcha import settings
from dl4cv.captcha.download import IMAGES, MANIFEST, decode_file
from dl4cv.captcha.labels import SKIP, read_labels
from dl4cv.captcha.segment import Box, SegmentationError, crop_digit
from dl4cv.config import CAPTCHA, Params
from dl4cv.data.formats import ProcessedDataset, write_rejects
from dl4cv.data.loaders import Reject
from dl4cv.data.sources import DownloadError, read_descriptor, sha256sum
from dl4cv.preprocessing import AspectAwarePreprocessor, DecodeError, ImageToArrayPreprocessor
from dl4cv.runtime.paths import (
    label_rejects_file,
    labels_file,
    processed_file,
    raw_dir,
    rejects_file,
)

log = logging.getLogger(__name__)


def run(params: Params) -> ProcessedDataset:
    """Write data/processed/captcha.npz and captcha-rejects.csv (what annotate rejected, crops
    skipped by the annotator, images that no longer read)."""
    spec = settings(params)
    raw = raw_dir(CAPTCHA)
    manifest = _verified_manifest(raw)
    rows = sorted(read_labels(labels_file(CAPTCHA)), key=lambda r: (r["file"], r["digit"]))
    rejects = _read_rejects(label_rejects_file(CAPTCHA))
    resize = AspectAwarePreprocessor(
        spec.image.width, spec.image.height, params.preprocess.interpolation
    )
    to_array = ImageToArrayPreprocessor()
    images, labels, ids = [], [], []
    unreadable: set[str] = set()
    current: tuple[str, np.ndarray] | None = None
    for row in tqdm(rows, desc="digits", disable=not sys.stderr.isatty()):
        crop_id = f"{row['file']}#{row['digit']}"
        if row["label"] == SKIP:
            rejects.append(Reject(crop_id, "not a digit (skipped by the annotator)"))
            continue
        if row["file"] in unreadable:
            continue
        try:
            if current is None or current[0] != row["file"]:
                current = (row["file"], _read(raw, row["file"], manifest))
            box = Box(row["x"], row["y"], row["w"], row["h"])
            crop = crop_digit(current[1], box, spec.segment)
        except DecodeError as exc:
            unreadable.add(row["file"])
            rejects.append(Reject(row["file"], f"not a decodable image: {exc}"))
            continue
        except SegmentationError as exc:
            rejects.append(Reject(crop_id, str(exc)))
            continue
        images.append(to_array.preprocess(resize.preprocess(crop)))
        labels.append(row["label"])
        ids.append(crop_id)
    if not images:
        raise DownloadError(f"{labels_file(CAPTCHA)}: no labelled digit crops to preprocess")
    classes = sorted(set(labels))
    index = {name: i for i, name in enumerate(classes)}
    processed = ProcessedDataset(
        np.stack(images).astype(np.uint8),
        np.array([index[label] for label in labels], dtype=np.int64),
        classes,
        ids,
        [""] * len(ids),
        rejects,
    )
    processed.save(processed_file(CAPTCHA))
    write_rejects(rejects_file(CAPTCHA), rejects)
    log.info(
        "%d digit crops %s in %d classes (%s), %d rejected (%s)",
        len(ids),
        processed.images.shape[1:],
        len(classes),
        " ".join(f"{c}:{labels.count(c)}" for c in classes),
        len(rejects),
        rejects_file(CAPTCHA),
    )
    return processed


def _verified_manifest(raw: Path) -> dict[str, str]:
    """file -> sha256 of the downloaded images, after checking the manifest itself."""
    fetched = read_descriptor(raw)
    if sha256sum(raw / MANIFEST) != fetched.sha256:
        raise DownloadError(f"{raw / MANIFEST}: changed since download; rerun captcha_download")
    with open(raw / MANIFEST, newline="") as fh:
        return {row["file"]: row["sha256"] for row in csv.DictReader(fh)}


def _read(raw: Path, file: str, manifest: dict[str, str]) -> np.ndarray:
    path = raw / IMAGES / file
    if file not in manifest:
        raise DownloadError(f"{path}: labelled but not in {raw / MANIFEST}; rerun annotate")
    if hashlib.sha256(path.read_bytes()).hexdigest() != manifest[file]:
        raise DownloadError(f"{path}: differs from its download (sha256); rerun the download")
    return decode_file(path)


def _read_rejects(path: Path) -> list[Reject]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; run the annotate stage first (dvc repro)")
    with open(path, newline="") as fh:
        return [Reject(row["file"], row["reason"]) for row in csv.DictReader(fh)]

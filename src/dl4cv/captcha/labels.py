"""Digit crops of the captcha folder and their labels file (data/labels/captcha.csv).

One row per labelled crop: `file,digit,x,y,w,h,label`; the box says where the crop is, so the
crops themselves need not be stored (the preprocess stage cuts them again from the raw image).
Rows stay in the order they were labelled: undo takes back the last one, also after a
restart. A crop the annotator judged not to be a digit is labelled `skip`.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from dl4cv.captcha.download import decode_file, image_files, read_truth
from dl4cv.captcha.segment import Box, SegmentationError, find_digits
from dl4cv.config import CaptchaSegment
from dl4cv.data.loaders import Reject
from dl4cv.data.sources import DownloadError
from dl4cv.preprocessing import DecodeError
from dl4cv.runtime.fileio import write_text

log = logging.getLogger(__name__)

COLUMNS = ["file", "digit", "x", "y", "w", "h", "label"]
SKIP = "skip"
KEYS = "0123456789"  # a label is one digit; the classes are the digits that occur


@dataclass(frozen=True)
class Crop:
    """Digit number `digit` (0 = leftmost) of captcha `file`."""

    file: str
    digit: int
    box: Box

    @property
    def id(self) -> str:
        return f"{self.file}#{self.digit}"


def segment_folder(
    raw: Path, spec: CaptchaSegment, progress: bool = True
) -> tuple[list[Crop], list[Reject]]:
    """Every digit crop of the captchas in `raw`, and the captchas that did not segment."""
    crops: list[Crop] = []
    rejects: list[Reject] = []
    for path in tqdm(image_files(raw), desc="segment", disable=not progress):
        try:
            boxes = find_digits(decode_file(path), spec)
        except DecodeError as exc:
            rejects.append(Reject(path.name, f"not a decodable image: {exc}"))
            continue
        except SegmentationError as exc:
            rejects.append(Reject(path.name, str(exc)))
            continue
        crops.extend(Crop(path.name, i, box) for i, box in enumerate(boxes))
    log.info(
        "%d captchas split into %d digit crops; %d did not split into %d digits",
        len({c.file for c in crops}),
        len(crops),
        len(rejects),
        spec.digits,
    )
    return crops, rejects


def labels_from_truth(
    crops: list[Crop], truth_file: Path, digits: int
) -> tuple[list[tuple[Crop, str]], list[Reject]]:
    """Label each crop with its character of the captcha's known text (the `file` method)."""
    truth = read_truth(truth_file)
    by_file: dict[str, list[Crop]] = {}
    for crop in crops:
        by_file.setdefault(crop.file, []).append(crop)
    labelled, rejects = [], []
    for file, own in by_file.items():
        text = truth.get(file)
        if text is None:
            rejects.append(Reject(file, f"no text for it in {truth_file}"))
        elif len(text) != digits or any(ch not in KEYS for ch in text):
            rejects.append(Reject(file, f"text {text!r} in {truth_file} is not {digits} digits"))
        else:
            labelled.extend((crop, text[crop.digit]) for crop in own)
    return labelled, rejects


class LabelStore:
    """The labels file of a set of crops, rewritten (atomically) after every change."""

    def __init__(self, path: Path, crops: list[Crop]) -> None:
        self.path = path
        self.crops = crops
        by_id = {c.id: c for c in crops}
        self.rows: list[tuple[Crop, str]] = []
        self._done: set[str] = set()
        dropped = 0
        for row in read_labels(path) if path.exists() else []:
            crop = by_id.get(f"{row['file']}#{row['digit']}")
            # the captcha is gone, now segments differently, or the crop is listed twice
            if crop is None or _box(row) != crop.box or crop.id in self._done:
                dropped += 1
                continue
            self.rows.append((crop, row["label"]))
            self._done.add(crop.id)
        if dropped:
            log.warning("%s: %d labels no longer match a crop; dropped", path, dropped)
            self.save()

    def pending(self) -> list[Crop]:
        return [c for c in self.crops if c.id not in self._done]

    def label(self, crop: Crop, label: str) -> None:
        if label != SKIP and (len(label) != 1 or label not in KEYS):
            raise ValueError(f"a label is one digit 0-9 or {SKIP!r}, got {label!r}")
        if crop.id in self._done:
            raise ValueError(f"{crop.id} is labelled already")
        self.rows.append((crop, label))
        self._done.add(crop.id)
        self.save()

    def undo(self) -> tuple[Crop, str] | None:
        """Take back the last label; returns it (None when there is nothing to undo)."""
        if not self.rows:
            return None
        crop, label = self.rows.pop()
        self._done.discard(crop.id)
        self.save()
        return crop, label

    def save(self) -> None:
        write_labels(self.path, self.rows)


def write_labels(path: Path, rows: list[tuple[Crop, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for crop, label in rows:
        b = crop.box
        writer.writerow([crop.file, crop.digit, b.x, b.y, b.w, b.h, label])
    write_text(path, buffer.getvalue())


def read_labels(path: Path) -> list[dict]:
    """The rows of a labels file, checked: ints where ints belong, a digit or `skip` label."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; run the annotate stage first (dvc repro)")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames != COLUMNS:
            raise DownloadError(f"{path}: expected the columns {COLUMNS}, got {reader.fieldnames}")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                for key in ("digit", "x", "y", "w", "h"):
                    row[key] = int(row[key])
            except (TypeError, ValueError):
                raise DownloadError(f"{path}:{line}: digit/x/y/w/h must be integers") from None
            if row["label"] != SKIP and (len(row["label"]) != 1 or row["label"] not in KEYS):
                raise DownloadError(
                    f"{path}:{line}: label {row['label']!r} is not a digit 0-9 or {SKIP!r}"
                )
            rows.append(row)
    return rows


def _box(row: dict) -> Box:
    return Box(row["x"], row["y"], row["w"], row["h"])

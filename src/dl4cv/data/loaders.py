"""SimpleDatasetLoader: decode and preprocess every image of a class-per-folder tree.

The tree may be a folder on disk or a zip archive (read in place: no 60,000-file extraction
for DVC to hash). An image that cannot be read or decoded is set aside as a `Reject` with
its reason; the load never stops midway and never drops a file without saying so.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import threading
import zipfile
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Protocol

import cv2
import numpy as np
from tqdm import tqdm

from dl4cv.preprocessing import DecodeError, ImageDecoder

log = logging.getLogger(__name__)

CHUNK = 256


@dataclass(frozen=True)
class Entry:
    name: str  # path inside the tree: what a reader looks for in the rejects file
    label: str
    split: str = ""  # the dataset's own split ("train"/"test") when its layout has one


@dataclass(frozen=True)
class Reject:
    name: str
    reason: str


class Preprocessor(Protocol):
    def preprocess(self, image: np.ndarray) -> np.ndarray: ...


class ImageSource(Protocol):
    def entries(self) -> list[Entry]: ...

    def read(self, entry: Entry) -> bytes: ...


def layout_entries(
    paths: Sequence[str],
    root: str | None = None,
    splits: dict[str, str] | None = None,
    classes: dict[str, str] | None = None,
) -> list[Entry]:
    """Map `[root/][split/]class/file` paths to entries.

    `splits` maps a split name to its folder; `classes` maps a class folder (possibly nested,
    e.g. `positives/positives7`) to its label. Without `classes`, each direct subfolder is a
    class. Files outside every class folder are not part of the dataset and are logged.
    """
    prefix = root.strip("/") + "/" if root else ""
    split_of = {folder: name for name, folder in (splits or {}).items()}
    entries, ignored = [], 0
    for path in sorted(paths):  # plain string work: archives hold tens of thousands of names
        if not path.startswith(prefix):
            ignored += 1
            continue
        rel, split = path[len(prefix) :], ""
        if split_of:
            head, _, rel = rel.partition("/")
            if head not in split_of:
                ignored += 1
                continue
            split = split_of[head]
        folder, sep, _ = rel.rpartition("/")
        direct = sep and folder and "/" not in folder
        label = classes.get(folder) if classes else (folder if direct else None)
        if label is None:
            ignored += 1
            continue
        entries.append(Entry(path, label, split))
    if ignored:
        log.info("ignored %d files outside the class folders", ignored)
    return entries


class FolderSource:
    """A class-per-folder tree on disk."""

    def __init__(
        self,
        path: str | Path,
        splits: dict[str, str] | None = None,
        classes: dict[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: not a folder")
        self.splits, self.classes = splits, classes

    def entries(self) -> list[Entry]:
        paths = [
            str(PurePosixPath(Path(dirpath, name).relative_to(self.path)))
            for dirpath, _, names in os.walk(self.path)
            for name in names
        ]
        return layout_entries(paths, None, self.splits, self.classes)

    def read(self, entry: Entry) -> bytes:
        return (self.path / entry.name).read_bytes()


class ZipSource:
    """A class-per-folder tree inside a zip archive, read in place by several threads.

    Image archives store their JPEGs uncompressed; those members are sliced straight out of a
    memory map (CRC-checked like zipfile does), which keeps the per-image Python work, and so
    the time threads wait on each other, small. Compressed members go through zipfile.
    """

    def __init__(
        self,
        path: str | Path,
        root: str | None = None,
        splits: dict[str, str] | None = None,
        classes: dict[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.root, self.splits, self.classes = root, splits, classes
        self._local = threading.local()
        with zipfile.ZipFile(self.path) as archive:  # fails early on a broken archive
            self._infos = {i.filename: i for i in archive.infolist() if not i.is_dir()}
        with open(self.path, "rb") as fh:
            self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)

    def entries(self) -> list[Entry]:
        return layout_entries(list(self._infos), self.root, self.splits, self.classes)

    def read(self, entry: Entry) -> bytes:
        info = self._infos[entry.name]
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            return self._zipfile().read(info)
        header = self._map[info.header_offset : info.header_offset + _LOCAL_HEADER.size]
        if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"bad local header for {entry.name}")
        name_len, extra_len = _LOCAL_HEADER.unpack(header)[-2:]
        start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        data = self._map[start : start + info.compress_size]
        if len(data) != info.compress_size or zlib.crc32(data) != info.CRC:
            raise zipfile.BadZipFile(f"bad CRC-32 or truncated member {entry.name}")
        return data

    def _zipfile(self) -> zipfile.ZipFile:
        archive = getattr(self._local, "archive", None)
        if archive is None:
            archive = self._local.archive = zipfile.ZipFile(self.path)
        return archive


# A zip local file header: signature, versions, flags, method, time, date, crc, sizes, lengths.
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")


@dataclass
class LoadedImages:
    data: np.ndarray
    labels: list[str]
    names: list[str]
    splits: list[str]
    rejects: list[Reject] = field(default_factory=list)


class SimpleDatasetLoader:
    def __init__(
        self,
        decoder: ImageDecoder | None = None,
        preprocessors: Sequence[Preprocessor] = (),
        workers: int = 0,
    ) -> None:
        self.decoder = decoder or ImageDecoder()
        self.preprocessors = list(preprocessors)
        self.workers = workers or os.cpu_count() or 1

    def load(self, source: ImageSource, progress: bool = True) -> LoadedImages:
        entries = source.entries()
        chunks = [entries[i : i + CHUNK] for i in range(0, len(entries), CHUNK)]
        images, kept, rejects = [], [], []
        with (
            ThreadPoolExecutor(self.workers) as pool,
            tqdm(
                total=len(entries), desc="images", unit="img", disable=not progress, mininterval=1.0
            ) as bar,
        ):
            for chunk, results in zip(
                chunks, pool.map(partial(self._load_chunk, source=source), chunks), strict=True
            ):
                for entry, result in zip(chunk, results, strict=True):
                    if isinstance(result, Reject):
                        rejects.append(result)
                    else:
                        images.append(result)
                        kept.append(entry)
                bar.update(len(chunk))
        shapes = {image.shape for image in images}
        if len(shapes) > 1:
            raise ValueError(
                f"images differ in shape after preprocessing ({sorted(shapes)[:3]}...); "
                "add a SimplePreprocessor to bring them to one size"
            )
        data = np.stack(images) if images else np.empty((0, 0, 0, 0), np.uint8)
        if rejects:
            log.warning(
                "set aside %d of %d images (see the rejects file)", len(rejects), len(entries)
            )
        return LoadedImages(
            data, [e.label for e in kept], [e.name for e in kept], [e.split for e in kept], rejects
        )

    def _load_chunk(self, chunk: list[Entry], source: ImageSource) -> list[np.ndarray | Reject]:
        return [self._load_one(entry, source) for entry in chunk]

    def _load_one(self, entry: Entry, source: ImageSource) -> np.ndarray | Reject:
        try:
            image = self.decoder.decode(source.read(entry))
            for preprocessor in self.preprocessors:
                image = preprocessor.preprocess(image)
            return image
        except (
            DecodeError,
            OSError,
            ValueError,
            cv2.error,
            zipfile.BadZipFile,
            zlib.error,
            EOFError,
        ) as exc:
            return Reject(entry.name, f"{type(exc).__name__}: {exc}")

"""SimpleDatasetLoader: decode and preprocess every image of a class-per-folder tree.

The tree may be a folder on disk or a zip archive (read in place: no 60,000-file extraction
for DVC to hash, and nothing is ever written where a member's name points). An image that
cannot be read or decoded, and any file outside the class folders (a README, a name that is
absolute or climbs out with `..`), is set aside as a `Reject` with its reason; the load never
stops midway and never drops a file without saying so.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import threading
import zipfile
import zlib
from collections import Counter
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
from dl4cv.runtime.errors import DatasetError

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


@dataclass(frozen=True)
class Layout:
    """A tree read as a dataset: its images, every other file with the reason it is left out,
    and each class with its folders (declared classes too, so an empty one is noticed)."""

    entries: list[Entry]
    rejects: list[Reject]
    classes: dict[str, list[str]]  # label -> class folders, each ending in "/"


class ImageSource(Protocol):
    def layout(self) -> Layout: ...

    def read(self, entry: Entry) -> bytes: ...


def layout_entries(
    paths: Sequence[str],
    root: str | None = None,
    splits: dict[str, str] | None = None,
    classes: dict[str, str] | None = None,
) -> Layout:
    """Map `[root/][split/]class/file` paths to entries; every other file is a `Reject`.

    `splits` maps a split name to its folder; `classes` maps a class folder (possibly nested,
    e.g. `positives/positives7`) to its label. Without `classes`, each direct subfolder is a
    class. Paths ending in "/" are folders (zip archives list them): an empty class folder
    still makes a class, which a caller can then report as having no image.
    """
    prefix = root.strip("/") + "/" if root else ""
    split_of = {folder: name for name, folder in (splits or {}).items()}
    entries, rejects = [], []
    found: dict[str, set[str]] = {label: set() for label in (classes or {}).values()}
    for path in sorted(paths):  # plain string work: archives hold tens of thousands of names
        place = _place(path, prefix, split_of, classes)
        if isinstance(place, str):
            if not path.endswith("/"):  # a folder is no file to list
                rejects.append(Reject(path, place))
            continue
        label, split = place
        found.setdefault(label, set()).add(path[: path.rindex("/") + 1])
        if not path.endswith("/"):
            entries.append(Entry(path, label, split))
    for folder, label in (classes or {}).items():  # declared, but no trace in the tree
        if not found[label]:
            found[label] = {f"{prefix}{s}/{folder}/" for s in split_of} or {f"{prefix}{folder}/"}
    return Layout(entries, rejects, {label: sorted(found[label]) for label in sorted(found)})


def _place(
    path: str, prefix: str, split_of: dict[str, str], classes: dict[str, str] | None
) -> tuple[str, str] | str:
    """(label, split) of a file in a class folder, or why it is not part of the dataset."""
    unsafe = _unsafe(path)
    if unsafe:
        return unsafe
    if not path.startswith(prefix):
        return f"outside the dataset's root folder {prefix}"
    rel, split = path[len(prefix) :], ""
    if split_of:
        head, _, rel = rel.partition("/")
        if head not in split_of:
            folders = ", ".join(f"{prefix}{f}/" for f in sorted(split_of))
            return f"not in a split folder ({folders})"
        split = split_of[head]
    folder, sep, _ = rel.rpartition("/")
    if classes:
        if folder not in classes:
            return (
                "not in a declared class folder ("
                + ", ".join(f"{c}/" for c in sorted(classes))
                + ")"
            )
        return classes[folder], split
    if not sep or not folder or "/" in folder:
        return f"not in a class folder ({prefix}{'<split>/' if split_of else ''}<class>/<file>)"
    return folder, split


def _unsafe(path: str) -> str | None:
    """Why a member name would point outside the tree if it were ever extracted, or None."""
    name = path.replace("\\", "/")
    if name.startswith("/") or name[1:2] == ":":  # /etc/x, C:/x
        return "unsafe name: an absolute path"
    parts = name.removesuffix("/").split("/")
    if ".." in parts:
        return "unsafe name: climbs out of the tree with '..'"
    if "." in parts or "" in parts:
        return "unsafe name: a '.' or empty path component"
    return None


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

    def layout(self) -> Layout:
        paths = []
        for dirpath, _, names in os.walk(self.path):
            rel = PurePosixPath(Path(dirpath).relative_to(self.path))
            if rel.parts:
                paths.append(f"{rel}/")  # a folder, so an empty class folder is seen
            paths += [str(rel / name) for name in names]
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
        try:  # fails early on a broken archive
            with zipfile.ZipFile(self.path) as archive:
                infos = archive.infolist()
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise DatasetError(f"{self.path}: not a valid zip archive ({exc})") from None
        self._infos = {i.filename: i for i in infos}
        # Two members of one name: only the last is readable (zipfile's rule); say so.
        counts = Counter(i.filename for i in infos if not i.is_dir())
        self._shadowed = sorted(name for name, count in counts.items() if count > 1)
        with open(self.path, "rb") as fh:
            self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        self._layout: Layout | None = None

    def layout(self) -> Layout:
        if self._layout is None:  # once: preprocess sizes the dataset before loading it
            found = layout_entries(list(self._infos), self.root, self.splits, self.classes)
            shadowed = [
                Reject(n, "a second member of this name: only the last is read")
                for n in self._shadowed
            ]
            self._layout = Layout(found.entries, shadowed + found.rejects, found.classes)
        return self._layout

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
    classes: dict[str, list[str]] = field(default_factory=dict)  # as in `Layout`


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
        layout = source.layout()
        entries = layout.entries
        chunks = [entries[i : i + CHUNK] for i in range(0, len(entries), CHUNK)]
        images, kept, rejects = [], [], list(layout.rejects)
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
                "set aside %d files: %d of %d images, and %d outside the class folders "
                "(see the rejects file)",
                len(rejects),
                len(entries) - len(kept),
                len(entries),
                len(layout.rejects),
            )
        return LoadedImages(
            data,
            [e.label for e in kept],
            [e.name for e in kept],
            [e.split for e in kept],
            rejects,
            layout.classes,
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

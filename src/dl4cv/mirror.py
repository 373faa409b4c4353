"""Turn the copy of a dataset a reader has (the book's `animals/` folder, or the zip the book
ships) into a mirror the download stage reads, in one command:

    python -m dl4cv.mirror add animals /path/to/animals [--to mirror]

The copy is checked first: the expected class folders exist (anywhere inside the folder or
zip) and each holds images OpenCV decodes, counted per class. Their files are then written as
`<root>/<class>/<file>` into one zip, `<to>/<dataset>.zip` (atomically; stored in name order
with fixed dates, so the same images always give the same bytes and DVC reruns nothing), and
listed in `<to>/mirror.json` with its sha256 and format, beside any other entry there. The
download stage verifies it by that sha256 like any download. It lives outside dl4cv.data so
that editing it never reruns the preprocess stages, which depend on that package.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
from tqdm import tqdm

from dl4cv.config import ConfigError, Dataset, Preprocess, load_params
from dl4cv.data.loaders import Entry, FolderSource, ImageSource, ZipSource
from dl4cv.data.sources import MANIFEST, sha256sum
from dl4cv.preprocessing import DecodeError, ImageDecoder
from dl4cv.runtime.fileio import atomic_path, write_json
from dl4cv.runtime.paths import MIRROR

FORMAT = "image-folder-zip"  # the format this command writes: class folders in a zip
BOOK_CLASSES = {"animals": ("cats", "dogs", "panda")}  # the class folders the book ships
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # one date for every member: the same images, the same bytes
CHUNK = 256  # images read and checked at once, in order


class MirrorError(ValueError):
    """The copy given cannot become a mirror entry; the message says why in one line."""


@dataclass(frozen=True)
class Added:
    """What `add` wrote: the archive, its sha256, and what it checked."""

    archive: Path
    manifest: Path
    sha256: str
    images: dict[str, int]  # decodable images per class folder
    undecodable: list[str]  # kept (preprocess lists them as rejects), named here
    left_out: int  # files outside the class folders


def expected_classes(dataset: Dataset) -> tuple[str, ...]:
    """The class folders a copy of `dataset` must hold: those params.yaml declares, else the
    book's."""
    source = dataset.source
    if source.format != FORMAT or source.splits:
        raise MirrorError(
            f"datasets.{dataset.name}: format {source.format!r}"
            f"{' with splits' if source.splits else ''}; this command packs {FORMAT} datasets "
            "(one folder per class)"
        )
    if source.classes:
        return tuple(source.classes)
    if dataset.name in BOOK_CLASSES:
        return BOOK_CLASSES[dataset.name]
    raise MirrorError(
        f"datasets.{dataset.name}.source.classes: name the class folders a copy must hold"
    )


def find_prefix(names: list[str], classes: tuple[str, ...]) -> str:
    """The shortest folder path `P` (`""` or ending in `/`) under which every class folder
    `P<class>/` holds a file: the copy's root, wherever the folder or zip puts it."""
    found: dict[str, set[str]] = {}
    for name in names:
        folder = name.rpartition("/")[0]
        for cls in classes:
            if folder == cls or folder.endswith("/" + cls):
                found.setdefault(folder[: len(folder) - len(cls)], set()).add(cls)
    complete = [prefix for prefix, got in found.items() if len(got) == len(classes)]
    if complete:
        return min(complete, key=lambda prefix: (prefix.count("/"), prefix))
    best = max(found.values(), key=len, default=set())
    missing = [f"{cls}/" for cls in classes if cls not in best]
    have = f" (found only {', '.join(f'{c}/' for c in sorted(best))})" if best else ""
    raise MirrorError(
        f"no class folder {', '.join(missing)} with files{have}; expected one folder holding "
        f"{', '.join(f'{c}/' for c in classes)}"
    )


def open_copy(src: Path, classes: tuple[str, ...]) -> tuple[ImageSource, list[Entry], int, int]:
    """The copy's images as a loader source, its entries (class folders' files, hidden ones
    left out), how many files were left out, and the length of the prefix to strip."""
    if src.is_dir():
        names = [
            Path(folder, name).relative_to(src).as_posix()
            for folder, _, files in os.walk(src)
            for name in files
        ]
    elif zipfile.is_zipfile(src):
        with zipfile.ZipFile(src) as archive:
            names = [i.filename for i in archive.infolist() if not i.is_dir()]
    else:
        raise MirrorError(f"{src}: neither a folder nor a zip archive")
    try:
        prefix = find_prefix(names, classes)
    except MirrorError as exc:
        raise MirrorError(f"{src}: {exc}") from None
    folders = {cls: cls for cls in classes}
    if src.is_dir():
        source: ImageSource = FolderSource(src / prefix, classes=folders)
        strip = 0
    else:
        source = ZipSource(src, prefix.rstrip("/") or None, classes=folders)
        strip = len(prefix)
    entries = [e for e in source.layout().entries if not e.name.rpartition("/")[2].startswith(".")]
    return source, entries, len(names) - len(entries), strip


def add(dataset: Dataset, src: Path, to: Path, options: Preprocess) -> Added:
    """Check the copy `src` of `dataset` and write it into the mirror folder `to`."""
    classes = expected_classes(dataset)
    manifest = read_manifest(to / MANIFEST)  # a broken one refuses before anything is written
    source, entries, left_out, strip = open_copy(src, classes)
    image = dataset.image
    decoder = ImageDecoder(image.channels, (image.width, image.height), options.fast_decode)
    root = dataset.source.root.strip("/") + "/" if dataset.source.root else ""
    images = dict.fromkeys(classes, 0)
    undecodable: list[str] = []

    def read(entry: Entry) -> tuple[bytes, bool]:
        data = source.read(entry)
        try:
            decoder.decode(data)
        except (DecodeError, cv2.error):
            return data, False
        return data, True

    archive = to / f"{dataset.name}.zip"
    with (
        atomic_path(archive, suffix=".zip") as tmp,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as out,
        ThreadPoolExecutor(options.workers or os.cpu_count() or 1) as pool,
        tqdm(total=len(entries), unit="img", disable=not sys.stderr.isatty()) as bar,
    ):
        for start in range(0, len(entries), CHUNK):
            chunk = entries[start : start + CHUNK]
            for entry, (data, ok) in zip(chunk, pool.map(read, chunk), strict=True):
                member = zipfile.ZipInfo(root + entry.name[strip:], ZIP_DATE)
                member.external_attr = 0o644 << 16
                out.writestr(member, data)
                if ok:
                    images[entry.label] += 1
                else:
                    undecodable.append(entry.name)
            bar.update(len(chunk))
        empty = [f"{cls}/" for cls, n in images.items() if n == 0]
        if empty:  # raised inside the block: no archive is left behind
            raise MirrorError(f"{src}: no image OpenCV can decode in {', '.join(empty)}")
    sha256 = sha256sum(archive)
    entry = {"file": archive.name, "sha256": sha256, "format": FORMAT}
    if dataset.source.root:
        entry["root"] = dataset.source.root
    write_json(to / MANIFEST, manifest | {dataset.name: entry})  # every other entry kept
    return Added(archive, to / MANIFEST, sha256, images, undecodable, left_out)


def read_manifest(path: Path) -> dict:
    """The mirror's manifest as it is (empty if there is none yet)."""
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise MirrorError(f"{path}: not valid JSON ({exc}); fix or remove it") from None
    if not isinstance(manifest, dict):
        raise MirrorError(f"{path}: expected a mapping of dataset names to entries")
    return manifest


def param_value(to: Path) -> str:
    """The mirror folder as params.yaml takes it: relative to the repository root (the
    working directory) when inside it, else absolute."""
    folder = to.resolve()
    try:
        return folder.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(folder)


def summary(name: str, added: Added, seconds: float, to: Path) -> str:
    """What was checked and written, and the one command that uses it."""
    counts = ", ".join(f"{cls} {n}" for cls, n in added.images.items())
    lines = [
        f"{name}: {sum(added.images.values())} images ({counts}) checked and written to "
        f"{added.archive} in {seconds:.1f} s; sha256 {added.sha256} listed in {added.manifest}"
    ]
    if added.undecodable:
        shown = ", ".join(added.undecodable[:3]) + (", ..." if len(added.undecodable) > 3 else "")
        lines.append(
            f"{len(added.undecodable)} files OpenCV cannot decode were kept; preprocess lists "
            f"them in data/processed/{name}-rejects.csv: {shown}"
        )
    if added.left_out:
        lines.append(f"{added.left_out} files outside the class folders (or hidden) left out")
    value = param_value(to)
    lines += [
        "Use it (DVC then reruns exactly what waited for it):",
        f"  dvc exp run -S datasets.{name}.source.mirror={value}",
        f"or set `mirror: {value}` under datasets.{name}.source in params.yaml and run dvc repro",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dl4cv.mirror",
        description="Make a mirror of a dataset that has no public URL from your copy of it.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    adding = commands.add_parser("add", help="check a copy and add it to a mirror folder")
    adding.add_argument("dataset", help="a dataset of params.yaml, e.g. animals")
    adding.add_argument("source", type=Path, help="its folder of class folders, or its zip")
    adding.add_argument(
        "--to", type=Path, default=MIRROR, help=f"the mirror folder (default: {MIRROR}/)"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        params = load_params()
        dataset = params.dataset(args.dataset)
        if not args.source.exists():
            raise MirrorError(f"{args.source}: no such folder or file")
        added = add(dataset, args.source, args.to, params.preprocess)
    except (ConfigError, MirrorError, OSError, zipfile.BadZipFile) as exc:
        sys.exit(f"mirror: {exc}")
    print(summary(args.dataset, added, time.perf_counter() - started, args.to))


if __name__ == "__main__":
    main()

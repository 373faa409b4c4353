"""Fetch a dataset's file from its official URL or from a mirror: sha256-verified and atomic.

A mirror is a folder (or a `file://` URL) holding a `mirror.json` manifest. A mirror file may
differ from the official one (another format, its own checksum): the manifest says so, and
the file is verified just as strictly. A dataset names its own mirror in params.yaml
(`datasets.<name>.source.mirror`), which DVC sees: providing a dataset that has no URL reruns
its download and what waited for it (see dl4cv.data.waiting). The DL4CV_MIRROR environment
variable names a mirror for every dataset without one; DVC does not see it. Either way every
file is checked against a declared sha256, and the mirror's folder is left out of the record
(`dataset.json`): where bytes come from must not change what they are.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from http.client import HTTPException
from pathlib import Path

from tqdm import tqdm

from dl4cv.config import ConfigError, Dataset, Source, build
from dl4cv.data.waiting import raise_if_waiting
from dl4cv.fileio import atomic_path, write_json

log = logging.getLogger(__name__)

MIRROR_ENV = "DL4CV_MIRROR"
MANIFEST = "mirror.json"
DESCRIPTOR = "dataset.json"
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A dataset file could not be obtained or failed verification."""


class NoSource(DownloadError):
    """The dataset has no URL and no mirror lists it: the download stage makes it wait."""


class _Transient(Exception):
    """A failure worth retrying (timeout, reset connection, 5xx, truncated body)."""


TransientError = _Transient  # for other downloaders (the captcha source) that retry the same way


@contextmanager
def http_errors(url: str) -> Iterator[None]:
    """Sort what urllib raises: worth a retry (timeout, reset, 5xx, 408/429, a body cut short:
    `TransientError`) or final (other 4xx: `DownloadError` naming the URL)."""
    try:
        yield
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Transient(f"{type(reason).__name__}: {reason}") from None
    except HTTPException as exc:  # IncompleteRead and friends: the body was cut short
        raise _Transient(f"{type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class Fetched:
    """What the download stage wrote; saved as dataset.json for the preprocess stage."""

    dataset: str
    file: str
    sha256: str
    origin: str  # "official", "mirror" or "bundled"
    location: str
    source: dict

    def write(self, directory: Path) -> None:
        write_json(directory / DESCRIPTOR, asdict(self))


def read_descriptor(directory: Path) -> Fetched:
    path = directory / DESCRIPTOR
    if not path.exists():
        raise DownloadError(f"{path}: missing; run the download stage first (dvc repro)")
    data = json.loads(path.read_text())
    raise_if_waiting(data)
    return Fetched(**data)


def sha256sum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def mirror_from_env() -> Path | None:
    value = os.environ.get(MIRROR_ENV, "").strip()
    return mirror_folder(value, f"{MIRROR_ENV}={value!r}") if value else None


def mirror_folder(value: str, what: str) -> Path:
    """The mirror folder `value` names (a path, relative to the working directory, or a
    file:// URL), checked to hold a manifest; `what` names the setting in errors."""
    if value.startswith("file://"):
        value = urllib.request.url2pathname(urllib.parse.urlparse(value).path)
    elif "://" in value:
        raise DownloadError(f"{what}: a mirror must be a local folder or a file:// URL")
    path = Path(value).expanduser().resolve()
    if not (path / MANIFEST).is_file():
        raise DownloadError(f"{what}: no {MANIFEST} found in {path}")
    return path


def dataset_mirror(dataset: Dataset) -> Path | None:
    """The mirror to fetch `dataset` from: its own `source.mirror`, which must list it, else
    the DL4CV_MIRROR folder (which may not: its datasets with a URL are then downloaded)."""
    if dataset.source.mirror is None:
        return mirror_from_env()
    what = f"datasets.{dataset.name}.source.mirror={dataset.source.mirror!r}"
    path = mirror_folder(dataset.source.mirror, what)
    if mirror_entry(path, dataset.name) is None:
        raise DownloadError(f"{what}: {path / MANIFEST} has no {dataset.name!r} entry")
    return path


def mirror_entry(mirror: Path, dataset: str) -> dict | None:
    manifest = mirror / MANIFEST
    try:
        entries = json.loads(manifest.read_text())
    except json.JSONDecodeError as exc:
        raise DownloadError(f"{manifest}: not valid JSON: {exc}") from None
    if not isinstance(entries, dict):
        raise DownloadError(f"{manifest}: expected a mapping of dataset names to entries")
    entry = entries.get(dataset)
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise DownloadError(f"{manifest}: {dataset}: expected a mapping with file, sha256, format")
    for key in ("file", "sha256", "format"):
        if not isinstance(entry.get(key), str):
            raise DownloadError(f"{manifest}: {dataset}.{key}: expected a string")
    return entry


def fetch(dataset: Dataset, dest: Path, mirror: Path | None = None, **http) -> Fetched:
    """Obtain `dataset` into `dest`, verified; skip the transfer if a verified copy is there."""
    dest.mkdir(parents=True, exist_ok=True)
    entry = mirror_entry(mirror, dataset.name) if mirror else None
    if entry is not None:
        source = _mirror_source(dataset.source, entry, mirror / MANIFEST)
        target = dest / Path(entry["file"]).name
        location = str(mirror / entry["file"])
        if not _already_verified(target, source.sha256):
            _copy_verified(mirror / entry["file"], target, source.sha256)
        fetched = Fetched(
            dataset.name, target.name, source.sha256, "mirror", location, recorded(source)
        )
    elif dataset.source.format == "sklearn-digits":
        fetched = _write_bundled_digits(dataset, dest)
    else:
        source = dataset.source
        if not source.url:
            raise NoSource(
                f"dataset {dataset.name!r} has no public download URL (datasets.{dataset.name}"
                f".source.url is empty); set datasets.{dataset.name}.source.mirror, or "
                f"{MIRROR_ENV}, to a folder whose {MANIFEST} lists {dataset.name!r}"
            )
        if not (source.sha256 or source.content_sha256):
            raise DownloadError(
                f"datasets.{dataset.name}.source.sha256 is empty: refusing to trust an "
                f"unverified download of {source.url} (an archive its host regenerates may "
                "declare content_sha256 instead)"
            )
        if mirror:
            log.info("mirror %s has no %r entry; using the official source", mirror, dataset.name)
        target = dest / (source.filename or Path(urllib.parse.urlparse(source.url).path).name)
        if not _already_verified(target, source.sha256, source):
            download(source.url, target, source.sha256, content=source, **http)
        # The bytes' checksum is recorded either way, so a run still says which file it read.
        fetched = Fetched(
            dataset.name,
            target.name,
            source.sha256 or sha256sum(target),
            "official",
            source.url,
            recorded(source),
        )
    fetched.write(dest)
    return fetched


def recorded(source: Source) -> dict:
    """The source as dataset.json keeps it: without the mirror's folder, which says where the
    bytes were, not what they are (naming a mirror must not change what later stages read)."""
    return {k: v for k, v in asdict(source).items() if k != "mirror"}


def _mirror_source(official: Source, entry: dict, manifest: Path) -> Source:
    """The mirror's file description: its own format and checksum, official layout otherwise."""
    fields = {k: entry[k] for k in ("format", "sha256", "root", "splits", "classes") if k in entry}
    # The mirror's file is verified by its own sha256 (its images may be re-encoded).
    merged = {**asdict(official), **fields, "url": None, "filename": None, "content_sha256": None}
    try:
        return build(Source, merged, f"{manifest}")
    except ConfigError as exc:
        raise DownloadError(str(exc)) from None


def _already_verified(path: Path, sha256: str | None, content: Source | None = None) -> bool:
    if not path.exists():
        return False
    if sha256 is None and content is not None:
        try:
            matches = content_sha256(path, content) == content.content_sha256
        except DownloadError:
            matches = False
    else:
        matches = sha256sum(path) == sha256
    if matches:
        log.info("%s: already present and verified, skipping", path)
        return True
    return False


def _copy_verified(src: Path, target: Path, sha256: str) -> None:
    if not src.is_file():
        raise DownloadError(f"mirror file {src} does not exist")
    with atomic_path(target) as tmp:
        with (
            open(src, "rb") as fin,
            open(tmp, "wb") as fout,
            _progress(src.stat().st_size, f"copy {src.name}") as bar,
        ):
            while chunk := fin.read(CHUNK):
                fout.write(chunk)
                bar.update(len(chunk))
        _verify(tmp, sha256, str(src))


def download(
    url: str,
    target: Path,
    sha256: str | None,
    *,
    content: Source | None = None,
    timeout: float = 30.0,
    retries: int = 4,
    backoff: float = 1.0,
) -> None:
    """Download `url` to `target`, retrying transient failures with exponential backoff.

    Verified against `sha256`, or, when that is None, against `content.content_sha256`."""
    if sha256 is None and (content is None or not content.content_sha256):
        raise ValueError(f"{url}: no sha256 and no content_sha256 to verify the download")
    with atomic_path(target) as tmp:
        for attempt in range(retries + 1):
            try:
                _download_once(url, tmp, timeout)
                break
            except _Transient as exc:
                if attempt == retries:
                    raise DownloadError(
                        f"{url}: giving up after {retries + 1} attempts: {exc}"
                    ) from None
                wait = backoff * 2**attempt
                log.warning("%s: %s; retrying in %.1f s", url, exc, wait)
                time.sleep(wait)
        if sha256 is None:
            _verify_content(tmp, content, url)
        else:
            _verify(tmp, sha256, url)


def _download_once(url: str, tmp: Path, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "dl4cv"})
    with (
        http_errors(url),
        urllib.request.urlopen(request, timeout=timeout) as response,
        open(tmp, "wb") as out,
    ):
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        received = 0
        with _progress(expected, Path(urllib.parse.urlparse(url).path).name) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if expected is not None and received != expected:
        raise _Transient(f"truncated: received {received} of {expected} bytes")


def _verify(path: Path, sha256: str, origin: str) -> None:
    actual = sha256sum(path)
    if actual != sha256:
        raise DownloadError(
            f"{origin}: checksum mismatch (expected sha256 {sha256}, got {actual}); "
            "the file was discarded"
        )


def content_sha256(path: Path, source: Source) -> str:
    """The sha256 of the dataset's images inside a zip, however the archive was packed.

    One line `name<TAB>sha256 of the bytes` per image of the layout (`root`, `splits`,
    `classes`: the members preprocess reads), names relative to `root`, sorted. GitHub
    rebuilds /archive/ zips (other compression, timestamps, order: other bytes); this only
    changes when a file of the dataset does, or a file is added or removed."""
    from dl4cv.data.loaders import layout_entries

    prefix = source.root.strip("/") + "/" if source.root else ""
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(path) as archive:
            names = [i.filename for i in archive.infolist() if not i.is_dir()]
            entries = layout_entries(names, source.root, source.splits, source.classes)
            if not entries:
                raise DownloadError(f"{path}: no images under the declared class folders")
            for entry in entries:  # sorted by name
                member = hashlib.sha256(archive.read(entry.name)).hexdigest()
                digest.update(f"{entry.name[len(prefix) :]}\t{member}\n".encode())
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DownloadError(f"{path}: not a readable zip archive ({exc})") from None
    return digest.hexdigest()


def _verify_content(path: Path, source: Source, origin: str) -> None:
    actual = content_sha256(path, source)
    if actual != source.content_sha256:
        raise DownloadError(
            f"{origin}: the images inside differ from the declared ones (expected "
            f"content_sha256 {source.content_sha256}, got {actual}); the file was discarded"
        )


def _progress(total: int | None, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, mininterval=1.0, leave=False)


def _write_bundled_digits(dataset: Dataset, dest: Path) -> Fetched:
    """scikit-learn ships the 8x8 digits; store them so later stages read one kind of input."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    target = dest / "digits.npz"
    with atomic_path(target, suffix=".npz") as tmp:
        np.savez(tmp, images=digits.images.astype(np.uint8), labels=digits.target)
    return Fetched(
        dataset.name,
        target.name,
        sha256sum(target),
        "bundled",
        "sklearn.datasets.load_digits",
        recorded(dataset.source),
    )

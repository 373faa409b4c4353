"""Fetch a dataset's file from its official URL or from a mirror: sha256-verified and atomic.

A mirror is a folder (or a `file://` URL) holding a `mirror.json` manifest. A mirror file may
differ from the official one (another format, its own checksum): the manifest says so, and
the file is verified just as strictly. A dataset names its own mirror in params.yaml
(`datasets.<name>.source.mirror`), which DVC sees: providing a dataset that has no URL reruns
its download and what waited for it (see dl4cv.data.waiting). The DL4CV_MIRROR environment
variable names a mirror for every dataset without one; DVC does not see it. Either way every
file is checked against a declared sha256, and the mirror's folder is left out of the record
(`dataset.json`): where bytes come from must not change what they are.

A checksum only says the bytes are the declared ones; the declared ones are then opened as
the archive their format names, so a manifest that names the wrong file fails here, in one
line, not as a traceback in preprocess. A server that keeps the connection alive while
sending next to nothing (one byte a second never trips a socket timeout) is dropped like
curl's --speed-limit/--speed-time, and the attempt retried.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from http.client import HTTPException, HTTPResponse
from pathlib import Path

from tqdm import tqdm

from dl4cv.config import IMAGE_ZIPS, ConfigError, Dataset, Source, build
from dl4cv.data.waiting import raise_if_waiting
from dl4cv.runtime.errors import InputError
from dl4cv.runtime.fileio import atomic_path, remove_leftovers, write_json

log = logging.getLogger(__name__)

MIRROR_ENV = "DL4CV_MIRROR"
MANIFEST = "mirror.json"
DESCRIPTOR = "dataset.json"
CHUNK = 1 << 20
# An attempt whose transfer stays below SPEED_LIMIT bytes/s for SPEED_TIME seconds is given up
# (and retried): curl's --speed-limit/--speed-time. The slowest honest mirror moves far more.
SPEED_LIMIT = 1024
SPEED_TIME = 30.0


class DownloadError(InputError, RuntimeError):
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
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DownloadError(
            f"{path}: not a dataset descriptor ({exc}); rerun the download stage"
        ) from None
    raise_if_waiting(data)
    try:
        return Fetched(**data)
    except TypeError as exc:
        raise DownloadError(
            f"{path}: not a dataset descriptor ({exc}); rerun the download stage"
        ) from None


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
        _remove_leftovers(target)
        if not _already_verified(target, source.sha256, source):
            _copy_verified(mirror / entry["file"], target, source)
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
        _remove_leftovers(target)
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


def _remove_leftovers(target: Path) -> None:
    for leftover in remove_leftovers(target):
        log.info("removed %s, left behind by an interrupted download", leftover)


def _already_verified(path: Path, sha256: str | None, source: Source) -> bool:
    if not path.exists():
        return False
    try:
        if sha256 is None:
            _verify_content(path, source, str(path))
        else:
            _verify(path, sha256, str(path), source.format)
    except DownloadError:
        return False
    log.info("%s: already present and verified, skipping", path)
    return True


def _copy_verified(src: Path, target: Path, source: Source) -> None:
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
        _verify(tmp, source.sha256, str(src), source.format)


def download(
    url: str,
    target: Path,
    sha256: str | None,
    *,
    content: Source | None = None,
    timeout: float = 30.0,
    retries: int = 4,
    backoff: float = 1.0,
    speed_limit: float = SPEED_LIMIT,
    speed_time: float = SPEED_TIME,
) -> None:
    """Download `url` to `target`, retrying transient failures with exponential backoff.

    An attempt slower than `speed_limit` bytes/s over `speed_time` seconds is one of those.
    Verified against `sha256`, or, when that is None, against `content.content_sha256`; then
    opened as the archive `content.format` names."""
    if sha256 is None and (content is None or not content.content_sha256):
        raise ValueError(f"{url}: no sha256 and no content_sha256 to verify the download")
    with atomic_path(target) as tmp:
        for attempt in range(retries + 1):
            try:
                _download_once(url, tmp, timeout, speed_limit, speed_time)
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
            _verify(tmp, sha256, url, content.format if content else None)


def _download_once(
    url: str, tmp: Path, timeout: float, speed_limit: float, speed_time: float
) -> None:
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
            for chunk in _chunks(response, speed_limit, speed_time):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if expected is not None and received != expected:
        raise _Transient(f"truncated: received {received} of {expected} bytes")


def _chunks(response: HTTPResponse, speed_limit: float, speed_time: float) -> Iterator[bytes]:
    """The body as it arrives (read1: whatever one receive brings, so a slow body is noticed
    while it trickles); `TransientError` once a `speed_time` window averages below
    `speed_limit` bytes/s."""
    start, counted = time.monotonic(), 0
    while chunk := response.read1(CHUNK):
        yield chunk
        counted += len(chunk)
        elapsed = time.monotonic() - start
        if elapsed >= speed_time:
            if counted < speed_limit * elapsed:
                raise _Transient(
                    f"too slow: {counted / elapsed:.0f} B/s for {elapsed:.1f} s (the minimum is "
                    f"{speed_limit:g} B/s over {speed_time:g} s)"
                )
            start, counted = time.monotonic(), 0


def _verify(path: Path, sha256: str, origin: str, fmt: str | None) -> None:
    actual = sha256sum(path)
    if actual != sha256:
        raise DownloadError(
            f"{origin}: checksum mismatch (expected sha256 {sha256}, got {actual}); "
            "the file was discarded"
        )
    check_archive(path, fmt, origin)


def check_archive(path: Path, fmt: str | None, origin: str) -> None:
    """Open `path` as the archive `fmt` names (its index, not every member): a file can match
    its declared sha256 and still not be one, when the declaration names the wrong file."""
    kind = "tar.gz" if fmt == "cifar10-python" else "zip"
    try:
        if fmt == "cifar10-python":
            with tarfile.open(path, "r:gz") as tar:
                tar.next()
        elif fmt in IMAGE_ZIPS or fmt == "keras-npz":  # an .npz is a zip archive
            zipfile.ZipFile(path).close()
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise DownloadError(
            f"{origin}: not a valid {kind} archive ({exc}), though its sha256 is the declared "
            "one: the declaration names the wrong file"
        ) from None


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
            entries = layout_entries(names, source.root, source.splits, source.classes).entries
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
    # disable=None: only on a terminal, so a log (dvc repro's, a failure's) holds no bar debris
    return tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        mininterval=1.0,
        leave=False,
        disable=None,
    )


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

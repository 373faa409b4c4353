"""Fill data/raw/captcha/ with captcha images: drawn by the generator, or fetched over HTTP.

The folder holds `images/` (one file per captcha), `manifest.csv` (file, sha256; its own
sha256 is the dataset's checksum), `truth.csv` (file, text; generator only),
`download-rejects.csv` (HTTP answers that were not saved, and why) and `dataset.json` (the
descriptor every dataset has, read by the train stage).

Both sources resume: every image is written atomically, so whatever is in `images/` is whole,
and a rerun only adds what is missing. `source.json` records which source filled the folder;
when the source changes (another seed, another URL) the folder starts over.

HTTP: each GET of `url` is one captcha. An answer is saved only if it decodes as an image and
its bytes are new (de-duplication by sha256). Timeouts, resets and 5xx/408/429 answers are
retried after exponential backoff; garbage and duplicates count as failed attempts too, so a
server that only ever answers badly ends the stage after `retries` + 1 attempts in a row, with
everything saved so far kept for the next run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dl4cv.captcha.generator import CaptchaGenerator
from dl4cv.config import CAPTCHA, CaptchaSource
from dl4cv.data.sources import DownloadError, Fetched, TransientError, http_errors
from dl4cv.preprocessing import DecodeError, ImageDecoder
from dl4cv.runtime.fileio import atomic_path, read_json, write_json, write_text

log = logging.getLogger(__name__)

IMAGES = "images"
MANIFEST = "manifest.csv"
TRUTH = "truth.csv"
REJECTS = "download-rejects.csv"
SOURCE = "source.json"
MAX_BYTES = 5 << 20  # a captcha is a few kB: anything this large is not one
_MAGIC = {b"\x89PNG": ".png", b"\xff\xd8": ".jpg", b"BM": ".bmp", b"II*\x00": ".tif"}


_Transient = TransientError  # a failure worth retrying after a pause


class _Rejected(Exception):
    """An answer that arrived but is not a new captcha image."""

    def __init__(self, reason: str, data: bytes) -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = data
        self.sha256 = hashlib.sha256(data).hexdigest()


def fetch_captchas(
    spec: CaptchaSource, dest: Path, digits: int = 4, progress: bool = True
) -> Fetched:
    """Make `dest` hold `spec.count` captchas from `spec`'s source (the generator draws
    `digits` digits in each); write its descriptor."""
    images = dest / IMAGES
    identity = _identity(spec, digits)
    if (dest / SOURCE).exists() and read_json(dest / SOURCE) != identity:
        log.info("%s was filled from another source; starting over", dest)
        shutil.rmtree(images, ignore_errors=True)
        for name in (MANIFEST, TRUTH, REJECTS):
            (dest / name).unlink(missing_ok=True)
    dest.mkdir(parents=True, exist_ok=True)
    write_json(dest / SOURCE, identity)
    if spec.kind == "generator":
        generate_captchas(spec.seed, spec.count, dest, digits, progress)
        location = f"dl4cv.captcha.generator (seed {spec.seed})"
    else:
        download_captchas(
            spec.url or "",
            spec.count,
            dest,
            timeout=spec.timeout,
            retries=spec.retries,
            backoff=spec.backoff,
            progress=progress,
        )
        location = spec.url or ""
    sha256 = write_manifest(dest)
    fetched = Fetched(CAPTCHA, MANIFEST, sha256, spec.kind, location, asdict(spec))
    fetched.write(dest)
    return fetched


def _identity(spec: CaptchaSource, digits: int) -> dict:
    """What decides the images themselves (not how many, nor how patiently they are fetched)."""
    if spec.kind == "generator":
        return {"kind": spec.kind, "seed": spec.seed, "digits": digits}
    return {"kind": spec.kind, "url": spec.url}


def image_files(dest: Path) -> list[Path]:
    folder = dest / IMAGES
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def generate_captchas(
    seed: int, count: int, dest: Path, digits: int = 4, progress: bool = True
) -> None:
    """Draw captchas 0..count-1 that are not there yet; list every text in truth.csv."""
    generator = CaptchaGenerator(seed, digits)
    (dest / IMAGES).mkdir(parents=True, exist_ok=True)
    wanted = {f"{i:05d}.png": i for i in range(count)}
    for path in image_files(dest):
        if path.name not in wanted:
            log.info("removing %s: beyond count %d", path, count)
            path.unlink()
    rows, drawn = [], 0
    for name, index in tqdm(wanted.items(), desc="captchas", disable=not progress):
        captcha = generator.render(index)
        rows.append((name, captcha.text))
        target = dest / IMAGES / name
        ok, encoded = cv2.imencode(".png", captcha.image)
        if not ok:
            raise DownloadError(f"{target}: OpenCV could not encode the captcha as PNG")
        data = encoded.tobytes()
        if target.exists():
            if target.read_bytes() == data:
                continue
            log.warning("%s: not the captcha drawn for it (changed by hand?); redrawn", target)
        with atomic_path(target, suffix=".png") as tmp:
            tmp.write_bytes(data)
        drawn += 1
    _write_csv(dest / TRUTH, ["file", "text"], rows)
    log.info(
        "%d captchas in %s (%d drawn now, %d already there)", count, dest, drawn, count - drawn
    )


def download_captchas(
    url: str,
    count: int,
    dest: Path,
    *,
    timeout: float = 10.0,
    retries: int = 4,
    backoff: float = 1.0,
    progress: bool = True,
) -> int:
    """GET `url` until `dest/images/` holds `count` distinct decodable images; returns how
    many were saved by this call."""
    decoder = ImageDecoder(channels=3)
    (dest / IMAGES).mkdir(parents=True, exist_ok=True)
    rejects = _read_rejects(dest / REJECTS)
    have: dict[str, str] = {}  # sha256 -> file name
    for path in image_files(dest):  # not written by us (writes are atomic), but reported
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        reason = f"{path.name}: duplicate of {have.get(digest)}" if digest in have else ""
        if not reason and not _decodes(decoder, data):
            reason = f"{path.name}: not a decodable image"
        if reason:
            log.warning("removing %s", reason)
            rejects.append([f"{reason} (found in {IMAGES}/, removed)", str(len(data)), digest])
            path.unlink()
            continue
        have[digest] = path.name
    kept = sorted(have.items(), key=lambda item: item[1])
    for digest, name in kept[count:]:
        log.info("removing %s: beyond count %d", name, count)
        (dest / IMAGES / name).unlink()
        del have[digest]
    numbered = [int(Path(n).stem) for n in have.values() if Path(n).stem.isdigit()]
    next_index = 1 + max(numbered, default=-1)
    saved, failures = 0, 0
    bar = tqdm(total=count, initial=len(have), desc="captchas", disable=not progress)
    try:
        while len(have) < count:
            try:
                data = _get(url, timeout)
                digest = hashlib.sha256(data).hexdigest()
                if digest in have:
                    raise _Rejected(f"duplicate of {have[digest]}", data)
                if not _decodes(decoder, data):
                    raise _Rejected("not a decodable image", data)
            except (_Transient, _Rejected) as exc:
                failures += 1
                if isinstance(exc, _Rejected):
                    rejects.append([exc.reason, str(len(exc.data)), exc.sha256])
                    _write_csv(dest / REJECTS, ["reason", "bytes", "sha256"], rejects)
                if failures > retries:
                    raise DownloadError(
                        f"{url}: giving up after {failures} failed attempts in a row (last: "
                        f"{exc}); {len(have)} of {count} captchas are saved in {dest / IMAGES}, "
                        "rerun to continue"
                    ) from None
                wait = backoff * 2 ** (failures - 1)
                log.warning("%s: %s; next attempt in %.1f s", url, exc, wait)
                time.sleep(wait)
                continue
            failures = 0
            name = f"{next_index:05d}{_extension(data)}"
            with atomic_path(dest / IMAGES / name, suffix=Path(name).suffix) as tmp:
                tmp.write_bytes(data)
            have[digest] = name
            next_index += 1
            saved += 1
            bar.update(1)
    finally:
        bar.close()
    _write_csv(dest / REJECTS, ["reason", "bytes", "sha256"], rejects)
    log.info(
        "%d captchas in %s (%d downloaded now); %d answers rejected in all (%s)",
        len(have),
        dest,
        saved,
        len(rejects),
        dest / REJECTS,
    )
    return saved


def _get(url: str, timeout: float) -> bytes:
    """One GET: the body, or _Transient / DownloadError (4xx other than 408/429: permanent)."""
    request = urllib.request.Request(
        url, headers={"User-Agent": "dl4cv", "Cache-Control": "no-cache"}
    )
    deadline = time.monotonic() + timeout
    with http_errors(url), urllib.request.urlopen(request, timeout=timeout) as response:
        chunks, size = [], 0
        # read1: whatever one receive brings, so the deadline is checked while a slow server
        # trickles its answer (read(n) would wait for all n bytes, one a second)
        while chunk := response.read1(64 << 10):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BYTES:
                raise _Rejected(f"larger than {MAX_BYTES} bytes", b"".join(chunks))
            if time.monotonic() > deadline:
                raise _Transient(f"no complete answer within {timeout} s")
        return b"".join(chunks)


def _decodes(decoder: ImageDecoder, data: bytes) -> bool:
    try:
        decoder.decode(data)
    except DecodeError:
        return False
    return True


def _extension(data: bytes) -> str:
    for magic, ext in _MAGIC.items():
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return ".img"


def write_manifest(dest: Path) -> str:
    """List every image with its sha256; return the manifest's own sha256 (the dataset's)."""
    rows = [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in image_files(dest)]
    text = _csv_text(["file", "sha256"], rows)
    write_text(dest / MANIFEST, text)
    return hashlib.sha256(text.encode()).hexdigest()


def read_truth(path: Path) -> dict[str, str]:
    """A `file,text` CSV (the generator's truth.csv, or labels made elsewhere)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (a CSV with columns file,text)")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"file", "text"} <= set(reader.fieldnames):
            raise DownloadError(f"{path}: expected the columns file,text, got {reader.fieldnames}")
        return {row["file"]: row["text"] for row in reader}


def _read_rejects(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.reader(fh))[1:]


def _write_csv(path: Path, header: list[str], rows: list) -> None:
    write_text(path, _csv_text(header, rows))


def _csv_text(header: list[str], rows: list) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def decode_file(path: Path) -> np.ndarray:
    """A captcha image from disk as BGR, or DecodeError."""
    return ImageDecoder(channels=3).decode(path.read_bytes())

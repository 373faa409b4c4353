"""Ch 21 captcha download against a real HTTP server on 127.0.0.1 that fails, stalls, answers
garbage and repeats itself; and the offline generator source, both resuming."""

from __future__ import annotations

import contextlib
import csv
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from dl4cv.captcha.download import (
    IMAGES,
    MANIFEST,
    REJECTS,
    TRUTH,
    download_captchas,
    fetch_captchas,
    image_files,
)
from dl4cv.captcha.generator import CaptchaGenerator
from dl4cv.config import CaptchaSource
from dl4cv.data.sources import DownloadError, read_descriptor, sha256sum

FAST = {"timeout": 0.5, "retries": 3, "backoff": 0.01, "progress": False}


def png(index: int, seed: int = 5) -> bytes:
    ok, buf = cv2.imencode(".png", CaptchaGenerator(seed).render(index).image)
    assert ok
    return buf.tobytes()


class CaptchaServer:
    """Answers GET /captcha with a fresh captcha PNG, unless the script says otherwise.

    `script` holds one action per request, consumed in order: ("status", code), ("stall", s),
    ("garbage", bytes), ("repeat", n) (the bytes of the n-th captcha served), ("drip", s) (a
    fresh captcha, one byte every s seconds); when it is empty, `then` decides: "fresh"
    captchas or ("status", code) forever.
    """

    def __init__(self) -> None:
        self.script: list[tuple] = []
        self.then: str | tuple = "fresh"
        self.served: list[bytes] = []
        self.requests = 0
        self.release = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path != "/captcha":
                    self.send_error(404)
                    return
                with server._lock:
                    server.requests += 1
                    action = server.script.pop(0) if server.script else server.then
                    if action == "fresh":
                        action = ("ok", png(len(server.served)))
                        server.served.append(action[1])
                    elif action[0] == "repeat":
                        action = ("ok", server.served[action[1]])
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    if action[0] == "status":
                        self.send_error(action[1])
                    elif action[0] == "stall":
                        server.release.wait(action[1])
                    elif action[0] == "drip":
                        self._drip(png(10_000), action[1])
                    else:  # "ok" or "garbage": a 200 with these bytes
                        self.send_response(200)
                        self.send_header("Content-Type", "image/png")
                        self.send_header("Content-Length", str(len(action[1])))
                        self.end_headers()
                        self.wfile.write(action[1])

            def _drip(self, body: bytes, seconds: float) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for byte in body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    if server.release.wait(seconds):
                        return

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/captcha"


@pytest.fixture
def server() -> Iterator[CaptchaServer]:
    srv = CaptchaServer()
    thread = threading.Thread(target=srv.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.httpd.shutdown()
    srv.httpd.server_close()


def rejects(dest: Path) -> list[dict]:
    with open(dest / REJECTS, newline="") as fh:
        return list(csv.DictReader(fh))


def test_download_survives_errors_stalls_garbage_and_duplicates(server, tmp_path):
    server.script = [
        ("status", 500),
        "fresh",
        ("stall", 5),  # longer than the 0.5 s timeout
        ("garbage", b"<html>rate limited</html>"),
        ("repeat", 0),  # the same bytes again
        "fresh",
        ("status", 503),
        "fresh",
    ]
    saved = download_captchas(server.url, 3, tmp_path, **FAST)
    assert saved == 3
    assert server.requests == 8
    files = image_files(tmp_path)
    assert [p.name for p in files] == ["00000.png", "00001.png", "00002.png"]
    assert [p.read_bytes() for p in files] == server.served  # each distinct answer, once
    for path in files:
        assert cv2.imread(str(path)) is not None
    reasons = [r["reason"] for r in rejects(tmp_path)]
    assert reasons == ["not a decodable image", "duplicate of 00000.png"]
    assert not list((tmp_path / IMAGES).glob(".*"))  # no temporary files left behind


def test_a_rerun_resumes_after_the_server_gives_out(server, tmp_path):
    server.script = ["fresh", "fresh"]
    server.then = ("status", 500)
    with pytest.raises(DownloadError, match="2 of 5 captchas are saved.*rerun to continue"):
        download_captchas(server.url, 5, tmp_path, **FAST)
    assert server.requests == 2 + FAST["retries"] + 1
    first = {p.name: p.stat().st_mtime_ns for p in image_files(tmp_path)}
    assert sorted(first) == ["00000.png", "00001.png"]

    server.requests = 0
    server.then = "fresh"
    (tmp_path / IMAGES / "00007.png").write_bytes(b"not an image")  # planted by hand:
    (tmp_path / IMAGES / "00008.png").write_bytes(server.served[0])  # reported and removed
    assert download_captchas(server.url, 5, tmp_path, **FAST) == 3
    assert server.requests == 3  # only what was missing
    assert [r["reason"] for r in rejects(tmp_path)] == [
        "00007.png: not a decodable image (found in images/, removed)",
        "00008.png: duplicate of 00000.png (found in images/, removed)",
    ]
    after = image_files(tmp_path)
    assert [p.name for p in after] == [f"{i:05d}.png" for i in range(5)]
    assert {p.name: p.stat().st_mtime_ns for p in after[:2]} == first  # kept, not rewritten
    assert download_captchas(server.url, 5, tmp_path, **FAST) == 0  # complete: nothing to do
    assert server.requests == 3


def test_an_answer_trickled_a_byte_at_a_time_misses_its_deadline_and_is_retried(server, tmp_path):
    """Each byte arrives well within the 0.5 s socket timeout; only the per-answer deadline,
    checked as the bytes trickle in, ends the attempt (not after the whole PNG, minutes)."""
    server.script = [("drip", 0.05), "fresh"]
    start = time.monotonic()
    assert download_captchas(server.url, 1, tmp_path, **FAST) == 1
    assert time.monotonic() - start < 3.0
    assert server.requests == 2
    assert [p.read_bytes() for p in image_files(tmp_path)] == server.served


def test_garbage_only_gives_up_and_saves_nothing(server, tmp_path):
    server.then = ("garbage", b"\x89PNG but not really")
    with pytest.raises(DownloadError, match="4 failed attempts in a row.*not a decodable image"):
        download_captchas(server.url, 2, tmp_path, **FAST)
    assert image_files(tmp_path) == []
    assert len(rejects(tmp_path)) == 4


def test_a_missing_endpoint_fails_at_once(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_captchas(server.url + "-gone", 2, tmp_path, **FAST)
    assert server.requests == 0  # the 404 path is not counted by the script


def test_fetch_writes_manifest_and_descriptor_and_restarts_for_a_new_source(server, tmp_path):
    http = CaptchaSource(kind="http", url=server.url, count=3, timeout=0.5, backoff=0.01)
    fetched = fetch_captchas(http, tmp_path, progress=False)
    assert (fetched.origin, fetched.location, fetched.file) == ("http", server.url, MANIFEST)
    assert read_descriptor(tmp_path) == fetched
    assert fetched.sha256 == sha256sum(tmp_path / MANIFEST)
    with open(tmp_path / MANIFEST, newline="") as fh:
        manifest = {r["file"]: r["sha256"] for r in csv.DictReader(fh)}
    assert manifest == {p.name: sha256sum(p) for p in image_files(tmp_path)}
    assert not (tmp_path / TRUTH).exists()  # only the generator knows the texts

    generated = fetch_captchas(CaptchaSource(count=2, seed=9), tmp_path, progress=False)
    assert generated.origin == "generator"
    assert [p.read_bytes() for p in image_files(tmp_path)] == [png(0, 9), png(1, 9)]
    assert not (tmp_path / REJECTS).exists()  # the HTTP source's files went with it


def test_generator_source_resumes_and_follows_count(tmp_path):
    spec = CaptchaSource(count=4, seed=3)
    fetch_captchas(spec, tmp_path, progress=False)
    files = image_files(tmp_path)
    texts = [CaptchaGenerator(3).render(i).text for i in range(4)]
    with open(tmp_path / TRUTH, newline="") as fh:
        assert [(r["file"], r["text"]) for r in csv.DictReader(fh)] == [
            (p.name, t) for p, t in zip(files, texts, strict=True)
        ]
    before = {p.name: p.stat().st_mtime_ns for p in files}
    original = files[2].read_bytes()
    files[2].unlink()
    files[1].write_bytes(b"changed by hand")
    first = fetch_captchas(spec, tmp_path, progress=False)
    assert files[2].read_bytes() == original  # redrawn identically
    assert files[1].read_bytes() == png(1, 3)  # repaired
    assert files[0].stat().st_mtime_ns == before[files[0].name]  # the others left alone
    fewer = fetch_captchas(CaptchaSource(count=2, seed=3), tmp_path, progress=False)
    assert [p.name for p in image_files(tmp_path)] == ["00000.png", "00001.png"]
    assert fewer.sha256 != first.sha256
    decoded = cv2.imdecode(np.frombuffer(original, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(decoded, CaptchaGenerator(3).render(2).image)  # lossless PNG

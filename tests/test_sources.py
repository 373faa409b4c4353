"""Dataset downloads against a real HTTP server on 127.0.0.1, and local mirrors on disk."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from dl4cv.config import Dataset, ImageSpec, Source, SplitSpec
from dl4cv.data.sources import (
    MIRROR_ENV,
    SPEED_LIMIT,
    SPEED_TIME,
    DownloadError,
    Fetched,
    download,
    fetch,
    mirror_entry,
    mirror_from_env,
    read_descriptor,
    sha256sum,
)
from tests.conftest import REPO

FAST = {"timeout": 0.5, "retries": 2, "backoff": 0.01}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(n: int = 5000, seed: int = 0) -> bytes:
    """A file the download stage accepts as an archive: a zip holding `n` random bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.bin", garbage(n, seed))
    return buffer.getvalue()


def garbage(n: int = 5000, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


class Server:
    """A local HTTP server whose answers per path are scripted by each test.

    `plan[path]` is a list of actions, one per request (the last one repeats):
    ("ok", body) | ("status", code) | ("stall", seconds) | ("truncate", body, claimed_length)
    | ("drip", body, seconds, piece): the body `piece` bytes at a time, `seconds` apart.
    """

    def __init__(self) -> None:
        self.plan: dict[str, list[tuple]] = {}
        self.requests: Counter[str] = Counter()
        self.release = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with server._lock:
                    server.requests[self.path] += 1
                    n = server.requests[self.path]
                actions = server.plan.get(self.path) or [("status", 404)]
                action = actions[min(n, len(actions)) - 1]
                # the client may give up first: that is the point of some tests
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._answer(action)

            def _answer(self, action: tuple) -> None:
                kind = action[0]
                if kind == "status":
                    self.send_error(action[1])
                    return
                if kind == "stall":
                    server.release.wait(action[1])
                    return
                body = action[1]
                length = action[2] if kind == "truncate" else len(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(length))
                self.end_headers()
                if kind != "drip":
                    self.wfile.write(body)
                    return
                _, _, seconds, piece = action
                for start in range(0, len(body), piece):
                    self.wfile.write(body[start : start + piece])
                    self.wfile.flush()
                    if server.release.wait(seconds):
                        return

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    @property
    def total(self) -> int:
        return sum(self.requests.values())


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    srv = Server()
    srv.thread.start()
    yield srv
    srv.release.set()
    srv.httpd.shutdown()
    srv.httpd.server_close()


def make_dataset(
    name: str = "toy", url: str | None = None, sha256: str | None = None, **source
) -> Dataset:
    return Dataset(
        name=name,
        source=Source(format=source.pop("format", "keras-npz"), url=url, sha256=sha256, **source),
        image=ImageSpec(28, 28, 1),
        split=SplitSpec("random"),
    )


def make_mirror(folder: Path, files: dict[str, bytes], manifest: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    (folder / "mirror.json").write_text(json.dumps(manifest))
    return folder


def listing(folder: Path) -> list[str]:
    """Everything in `folder`, hidden temporary files included."""
    return sorted(p.name for p in folder.iterdir())


# --- download() ---------------------------------------------------------------------------------


def test_download_writes_the_verified_file(server: Server, tmp_path: Path):
    body = payload()
    server.plan["/data.bin"] = [("ok", body)]
    target = tmp_path / "out" / "data.bin"
    download(server.url("/data.bin"), target, sha(body), **FAST)
    assert target.read_bytes() == body
    assert listing(target.parent) == ["data.bin"]
    assert server.requests["/data.bin"] == 1


def test_http_404_fails_at_once_without_retrying(server: Server, tmp_path: Path):
    server.plan["/missing.bin"] = [("status", 404)]
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url("/missing.bin"), tmp_path / "m.bin", sha(b""), **FAST)
    assert server.requests["/missing.bin"] == 1
    assert listing(tmp_path) == []


def test_http_500_is_retried_until_it_succeeds(server: Server, tmp_path: Path):
    body = payload(seed=1)
    server.plan["/flaky.bin"] = [("status", 500), ("status", 500), ("ok", body)]
    target = tmp_path / "flaky.bin"
    download(server.url("/flaky.bin"), target, sha(body), **FAST)
    assert target.read_bytes() == body
    assert server.requests["/flaky.bin"] == 3
    assert listing(tmp_path) == ["flaky.bin"]


def test_persistent_5xx_gives_up_after_all_retries(server: Server, tmp_path: Path):
    server.plan["/down.bin"] = [("status", 503)]
    with pytest.raises(DownloadError, match="giving up after 3 attempts: HTTP 503"):
        download(server.url("/down.bin"), tmp_path / "down.bin", sha(b"x"), **FAST)
    assert server.requests["/down.bin"] == 3
    assert listing(tmp_path) == []


def test_stalled_server_times_out_and_fails_after_retries(server: Server, tmp_path: Path):
    server.plan["/stall.bin"] = [("stall", 5.0)]
    start = time.monotonic()
    with pytest.raises(DownloadError, match="giving up after 2 attempts"):
        download(
            server.url("/stall.bin"),
            tmp_path / "s.bin",
            sha(b"x"),
            timeout=0.3,
            retries=1,
            backoff=0.01,
        )
    elapsed = time.monotonic() - start
    assert server.requests["/stall.bin"] == 2
    assert elapsed < 3.0  # two 0.3 s timeouts, not the server's 5 s stall
    assert listing(tmp_path) == []


def test_truncated_body_is_retried_then_fails(server: Server, tmp_path: Path):
    body = payload(seed=2)
    server.plan["/cut.bin"] = [("truncate", body[:1000], len(body))]
    with pytest.raises(DownloadError, match=f"truncated: received 1000 of {len(body)} bytes"):
        download(server.url("/cut.bin"), tmp_path / "cut.bin", sha(body), **FAST)
    assert server.requests["/cut.bin"] == 3
    assert listing(tmp_path) == []


def test_truncated_body_then_full_body_succeeds(server: Server, tmp_path: Path):
    body = payload(seed=3)
    server.plan["/cut.bin"] = [("truncate", body[:10], len(body)), ("ok", body)]
    download(server.url("/cut.bin"), tmp_path / "cut.bin", sha(body), **FAST)
    assert (tmp_path / "cut.bin").read_bytes() == body
    assert server.requests["/cut.bin"] == 2


def test_checksum_mismatch_leaves_no_file(server: Server, tmp_path: Path):
    body = payload(seed=4)
    server.plan["/evil.bin"] = [("ok", body)]
    wrong = sha(body + b"!")
    with pytest.raises(DownloadError, match="checksum mismatch") as info:
        download(server.url("/evil.bin"), tmp_path / "evil.bin", wrong, **FAST)
    assert wrong in str(info.value) and sha(body) in str(info.value)
    assert server.requests["/evil.bin"] == 1  # a bad checksum is not a transient failure
    assert listing(tmp_path) == []


def test_unreachable_host_is_a_download_error(tmp_path: Path, server: Server):
    port = server.httpd.server_address[1]
    server.httpd.shutdown()
    server.httpd.server_close()  # nothing listens on the port any more
    with pytest.raises(DownloadError, match="giving up after 2 attempts"):
        download(
            f"http://127.0.0.1:{port}/x",
            tmp_path / "x",
            sha(b""),
            timeout=0.5,
            retries=1,
            backoff=0.01,
        )
    assert listing(tmp_path) == []


def test_server_trickling_bytes_is_given_up_through_the_retry_loop(server: Server, tmp_path: Path):
    """One byte every 50 ms never trips the 0.5 s socket timeout: only the speed limit (here
    1000 B/s over 0.4 s) ends each attempt, and the retries then end the download."""
    body = payload(n=4000, seed=11)  # 200 s at this pace
    server.plan["/drip.bin"] = [("drip", body, 0.05, 1)]
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download(
            server.url("/drip.bin"),
            tmp_path / "drip.bin",
            sha(body),
            timeout=0.5,
            retries=1,
            backoff=0.01,
            speed_limit=1000,
            speed_time=0.4,
        )
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert message.startswith(f"{server.url('/drip.bin')}: giving up after 2 attempts: too slow: ")
    assert message.endswith(" s (the minimum is 1000 B/s over 0.4 s)"), message
    assert "\n" not in message
    assert server.requests["/drip.bin"] == 2
    assert elapsed < 3.0  # two 0.4 s windows, not 200 s
    assert listing(tmp_path) == []  # no partial file, no temporary left


def test_slow_attempt_then_a_good_one_succeeds(server: Server, tmp_path: Path):
    body = payload(n=3000, seed=12)
    server.plan["/slow.bin"] = [("drip", body, 0.05, 1), ("ok", body)]
    download(
        server.url("/slow.bin"),
        tmp_path / "slow.bin",
        sha(body),
        speed_limit=1000,
        speed_time=0.3,
        timeout=0.5,
        retries=1,
        backoff=0.01,
    )
    assert (tmp_path / "slow.bin").read_bytes() == body
    assert server.requests["/slow.bin"] == 2


def test_a_steady_transfer_above_the_speed_limit_is_not_cut(server: Server, tmp_path: Path):
    body = payload(n=6400, seed=13)
    # 256 bytes every 10 ms, about 25 kB/s, checked every 50 ms: even a whole second's pause
    # of a busy machine between two pieces stays above the 200 B/s minimum
    server.plan["/steady.bin"] = [("drip", body, 0.01, 256)]
    download(
        server.url("/steady.bin"),
        tmp_path / "steady.bin",
        sha(body),
        speed_limit=200,
        speed_time=0.05,
        timeout=0.5,
        retries=0,
    )
    assert (tmp_path / "steady.bin").read_bytes() == body


def test_speed_limit_defaults_are_curl_like():
    assert (SPEED_LIMIT, SPEED_TIME) == (1024, 30.0)  # below 1 KiB/s for 30 s: give up


def test_temporary_file_of_a_killed_download_is_removed_by_the_next_run(
    server: Server, tmp_path: Path
):
    body = payload(n=2000, seed=14)
    server.plan["/toy.npz"] = [("drip", body, 0.05, 1), ("ok", body)]
    dataset = make_dataset(url=server.url("/toy.npz"), sha256=sha(body))
    dest = tmp_path / "raw"
    code = (
        "import sys; from pathlib import Path; from dl4cv.data.sources import download; "
        "download(sys.argv[1], Path(sys.argv[2]), sys.argv[3], speed_limit=0, retries=0)"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", code, server.url("/toy.npz"), str(dest / "toy.npz"), sha(body)],
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while not (server.requests["/toy.npz"] and dest.is_dir() and listing(dest)):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
    finally:
        proc.kill()  # SIGKILL: no cleanup runs
        proc.wait()
    [leftover] = listing(dest)
    assert leftover.startswith(".toy.npz.") and leftover.endswith(".tmp")
    fetch(dataset, dest, **FAST)
    assert listing(dest) == ["dataset.json", "toy.npz"]
    assert (dest / "toy.npz").read_bytes() == body


# --- fetch(): official source -------------------------------------------------------------------


def test_fetch_downloads_and_writes_the_descriptor(server: Server, tmp_path: Path):
    body = payload(seed=5)
    server.plan["/files/toy.npz?raw=1"] = [("ok", body)]
    dataset = make_dataset(url=server.url("/files/toy.npz?raw=1"), sha256=sha(body))
    dest = tmp_path / "raw" / "toy"
    fetched = fetch(dataset, dest, **FAST)
    assert fetched == Fetched(
        "toy",
        "toy.npz",
        sha(body),
        "official",
        dataset.source.url,
        {
            "format": "keras-npz",
            "url": dataset.source.url,
            "sha256": sha(body),
            "filename": None,
            "root": None,
            "splits": None,
            "classes": None,
            "content_sha256": None,
        },
    )
    assert (dest / "toy.npz").read_bytes() == body
    assert read_descriptor(dest) == fetched
    assert json.loads((dest / "dataset.json").read_text())["origin"] == "official"
    assert listing(dest) == ["dataset.json", "toy.npz"]


def test_fetch_uses_the_declared_filename(server: Server, tmp_path: Path):
    body = payload(seed=6)
    server.plan["/download"] = [("ok", body)]
    dataset = make_dataset(url=server.url("/download"), sha256=sha(body), filename="named.bin")
    fetched = fetch(dataset, tmp_path, **FAST)
    assert fetched.file == "named.bin"
    assert (tmp_path / "named.bin").read_bytes() == body


def test_verified_file_is_not_downloaded_again(server: Server, tmp_path: Path):
    body = payload(seed=7)
    server.plan["/toy.npz"] = [("ok", body)]
    dataset = make_dataset(url=server.url("/toy.npz"), sha256=sha(body))
    (tmp_path / "toy.npz").write_bytes(body)  # e.g. restored from the DVC cache
    fetched = fetch(dataset, tmp_path, **FAST)
    assert server.total == 0
    assert fetched.origin == "official"
    assert read_descriptor(tmp_path) == fetched
    fetch(dataset, tmp_path, **FAST)
    assert server.total == 0


def test_stale_file_is_replaced_by_a_fresh_download(server: Server, tmp_path: Path):
    body = payload(seed=8)
    server.plan["/toy.npz"] = [("ok", body)]
    dataset = make_dataset(url=server.url("/toy.npz"), sha256=sha(body))
    (tmp_path / "toy.npz").write_bytes(body[:-1])  # half a previous download
    fetch(dataset, tmp_path, **FAST)
    assert server.requests["/toy.npz"] == 1
    assert (tmp_path / "toy.npz").read_bytes() == body


def test_dataset_without_url_and_without_mirror_names_the_env_var(tmp_path: Path, server: Server):
    dataset = make_dataset(name="animals", format="image-folder-zip", root="animals")
    with pytest.raises(DownloadError) as info:
        fetch(dataset, tmp_path, **FAST)
    assert MIRROR_ENV in str(info.value)
    assert "animals" in str(info.value)
    assert not (tmp_path / "dataset.json").exists()


def test_dataset_without_checksum_is_refused(server: Server, tmp_path: Path):
    server.plan["/toy.npz"] = [("ok", b"data")]
    dataset = make_dataset(url=server.url("/toy.npz"))
    with pytest.raises(DownloadError, match=r"datasets\.toy\.source\.sha256 is empty"):
        fetch(dataset, tmp_path, **FAST)
    assert server.total == 0


# --- mirrors -----------------------------------------------------------------------------------


def mirrored_setup(tmp_path: Path, server: Server) -> tuple[Dataset, bytes, Path]:
    """An official source on the server and a mirror holding another file of another format."""
    official = payload(seed=9)
    server.plan["/cifar.tar.gz"] = [("ok", official)]
    dataset = make_dataset(
        name="cifar",
        url=server.url("/cifar.tar.gz"),
        sha256=sha(official),
        format="cifar10-python",
    )
    mirrored = payload(seed=10)
    mirror = make_mirror(
        tmp_path / "mirror",
        {"cifar/cifar-jpg.zip": mirrored},
        {
            "cifar": {
                "file": "cifar/cifar-jpg.zip",
                "sha256": sha(mirrored),
                "format": "image-folder-zip",
                "splits": {"train": "train", "test": "test"},
            }
        },
    )
    return dataset, mirrored, mirror


@pytest.mark.parametrize("as_url", [False, True], ids=["folder", "file-url"])
def test_mirror_from_env_serves_its_own_format_and_checksum(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch, as_url: bool
):
    dataset, mirrored, mirror = mirrored_setup(tmp_path, server)
    monkeypatch.setenv(MIRROR_ENV, mirror.as_uri() if as_url else str(mirror))
    assert mirror_from_env() == mirror.resolve()
    dest = tmp_path / "raw"
    fetched = fetch(dataset, dest, mirror_from_env(), **FAST)
    assert server.total == 0  # the official host is never contacted
    assert fetched.origin == "mirror"
    assert fetched.file == "cifar-jpg.zip"
    assert fetched.sha256 == sha(mirrored) != dataset.source.sha256
    assert fetched.location == str(mirror.resolve() / "cifar/cifar-jpg.zip")
    assert fetched.source["format"] == "image-folder-zip"
    assert fetched.source["splits"] == {"train": "train", "test": "test"}
    assert fetched.source["url"] is None
    assert (dest / "cifar-jpg.zip").read_bytes() == mirrored
    assert read_descriptor(dest) == fetched
    assert listing(dest) == ["cifar-jpg.zip", "dataset.json"]


def test_mirror_copy_is_skipped_when_already_verified(tmp_path: Path, server: Server):
    dataset, mirrored, mirror = mirrored_setup(tmp_path, server)
    dest = tmp_path / "raw"
    fetch(dataset, dest, mirror, **FAST)
    (mirror / "cifar/cifar-jpg.zip").unlink()  # a second copy would now fail
    fetched = fetch(dataset, dest, mirror, **FAST)
    assert fetched.origin == "mirror"
    assert (dest / "cifar-jpg.zip").read_bytes() == mirrored


def test_mirror_file_with_wrong_checksum_is_rejected(tmp_path: Path, server: Server):
    dataset, mirrored, mirror = mirrored_setup(tmp_path, server)
    (mirror / "cifar/cifar-jpg.zip").write_bytes(mirrored[:-10] + b"tampered!!")
    dest = tmp_path / "raw"
    with pytest.raises(DownloadError, match="checksum mismatch") as info:
        fetch(dataset, dest, mirror, **FAST)
    assert str(mirror / "cifar/cifar-jpg.zip") in str(info.value)
    assert listing(dest) == []  # no copy, no temp file, no descriptor
    assert server.total == 0  # no silent fallback to another source


def test_missing_mirror_file_is_a_download_error(tmp_path: Path, server: Server):
    dataset, _, mirror = mirrored_setup(tmp_path, server)
    (mirror / "cifar/cifar-jpg.zip").unlink()
    with pytest.raises(DownloadError, match="does not exist"):
        fetch(dataset, tmp_path / "raw", mirror, **FAST)


def test_mirror_without_an_entry_falls_back_to_the_official_url(tmp_path: Path, server: Server):
    dataset, _, mirror = mirrored_setup(tmp_path, server)
    other = make_dataset(
        name="mnist", url=dataset.source.url, sha256=dataset.source.sha256, format="keras-npz"
    )
    fetched = fetch(other, tmp_path / "raw", mirror, **FAST)
    assert fetched.origin == "official"
    assert fetched.location == dataset.source.url
    assert server.requests["/cifar.tar.gz"] == 1
    assert sha256sum(tmp_path / "raw" / fetched.file) == dataset.source.sha256


def test_mirror_without_an_entry_and_no_url_names_the_env_var(tmp_path: Path, server: Server):
    _, _, mirror = mirrored_setup(tmp_path, server)
    dataset = make_dataset(name="animals", format="image-folder-zip")
    with pytest.raises(DownloadError, match=MIRROR_ENV):
        fetch(dataset, tmp_path / "raw", mirror, **FAST)


def test_mirror_entry_with_a_bad_format_is_rejected(tmp_path: Path, server: Server):
    dataset, mirrored, mirror = mirrored_setup(tmp_path, server)
    manifest = json.loads((mirror / "mirror.json").read_text())
    manifest["cifar"]["format"] = "rar"
    (mirror / "mirror.json").write_text(json.dumps(manifest))
    with pytest.raises(DownloadError, match=r"mirror\.json: format: expected one of"):
        fetch(dataset, tmp_path / "raw", mirror, **FAST)


def test_mirror_entry_needs_file_sha256_and_format(tmp_path: Path):
    mirror = make_mirror(tmp_path, {}, {"toy": {"file": "toy.npz", "format": "keras-npz"}})
    with pytest.raises(DownloadError, match=r"toy\.sha256: expected a string"):
        mirror_entry(mirror, "toy")
    assert mirror_entry(mirror, "other") is None
    (tmp_path / "mirror.json").write_text("{not json")
    with pytest.raises(DownloadError, match="not valid JSON"):
        mirror_entry(mirror, "toy")
    (tmp_path / "mirror.json").write_text(json.dumps([{"file": "toy.npz"}]))
    with pytest.raises(DownloadError, match="expected a mapping of dataset names"):
        mirror_entry(mirror, "toy")
    (tmp_path / "mirror.json").write_text(json.dumps({"toy": "toy.npz"}))
    with pytest.raises(DownloadError, match="toy: expected a mapping with file, sha256, format"):
        mirror_entry(mirror, "toy")


def test_mirror_env_var_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    assert mirror_from_env() is None
    monkeypatch.setenv(MIRROR_ENV, "  ")
    assert mirror_from_env() is None
    monkeypatch.setenv(MIRROR_ENV, "https://example.org/mirror")
    with pytest.raises(DownloadError, match="local folder or a file:// URL"):
        mirror_from_env()
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path))
    with pytest.raises(DownloadError, match="no mirror.json"):
        mirror_from_env()
    spaced = make_mirror(tmp_path / "my mirror", {}, {})
    monkeypatch.setenv(MIRROR_ENV, spaced.as_uri())  # percent-encoded space
    assert mirror_from_env() == spaced.resolve()


# --- bundled ----------------------------------------------------------------------------------


def test_sklearn_digits_are_bundled_without_network(tmp_path: Path, server: Server):
    dataset = make_dataset(name="digits", format="sklearn-digits")
    fetched = fetch(dataset, tmp_path, **FAST)
    assert server.total == 0
    assert fetched.origin == "bundled"
    assert fetched.file == "digits.npz"
    assert fetched.sha256 == sha256sum(tmp_path / "digits.npz")
    digits = load_digits()
    with np.load(tmp_path / "digits.npz") as npz:
        assert npz["images"].dtype == np.uint8
        np.testing.assert_array_equal(npz["images"], digits.images.astype(np.uint8))
        np.testing.assert_array_equal(npz["labels"], digits.target)
    assert read_descriptor(tmp_path) == fetched
    assert listing(tmp_path) == ["dataset.json", "digits.npz"]
    again = fetch(dataset, tmp_path, **FAST)
    assert again.sha256 == fetched.sha256  # deterministic bytes: DVC sees no change


def test_read_descriptor_without_download_says_what_to_run(tmp_path: Path):
    with pytest.raises(DownloadError, match="run the download stage"):
        read_descriptor(tmp_path)


@pytest.mark.parametrize("content", ["{not json", '["a list"]', '{"dataset": "toy"}'])
def test_damaged_descriptor_is_one_clear_error(tmp_path: Path, content: str):
    (tmp_path / "dataset.json").write_text(content)
    with pytest.raises(DownloadError) as info:
        read_descriptor(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'dataset.json'}: not a dataset descriptor (")
    assert message.endswith("); rerun the download stage") and "\n" not in message


# --- a verified file that is not the archive its format names -----------------------------------


def test_mirror_file_matching_its_sha256_but_not_a_zip_is_refused(tmp_path: Path, server: Server):
    bad = garbage(seed=20)
    mirror = make_mirror(
        tmp_path / "mirror",
        {"animals.zip": bad},
        {"animals": {"file": "animals.zip", "sha256": sha(bad), "format": "image-folder-zip"}},
    )
    dataset = make_dataset(name="animals", format="image-folder-zip", root="animals")
    dest = tmp_path / "raw"
    with pytest.raises(DownloadError) as info:
        fetch(dataset, dest, mirror, **FAST)
    assert str(info.value) == (
        f"{mirror / 'animals.zip'}: not a valid zip archive (File is not a zip file), though "
        "its sha256 is the declared one: the declaration names the wrong file"
    )
    assert listing(dest) == []  # nothing kept, no descriptor for preprocess to trust
    (mirror / "animals.zip").write_bytes(payload(seed=22))  # the manifest corrected: it works
    manifest = json.loads((mirror / "mirror.json").read_text())
    manifest["animals"]["sha256"] = sha(payload(seed=22))
    (mirror / "mirror.json").write_text(json.dumps(manifest))
    assert fetch(dataset, dest, mirror, **FAST).sha256 == sha(payload(seed=22))


def test_official_download_matching_its_sha256_but_not_an_npz_is_refused(
    server: Server, tmp_path: Path
):
    bad = garbage(seed=21)
    server.plan["/mnist.npz"] = [("ok", bad)]
    dataset = make_dataset(name="mnist", url=server.url("/mnist.npz"), sha256=sha(bad))
    with pytest.raises(DownloadError, match=r"mnist\.npz: not a valid zip archive \(File is not"):
        fetch(dataset, tmp_path, **FAST)
    assert listing(tmp_path) == []
    (tmp_path / "mnist.npz").write_bytes(bad)  # present and sha256-matching: not trusted
    with pytest.raises(DownloadError, match="not a valid zip archive"):
        fetch(dataset, tmp_path, **FAST)
    assert server.requests["/mnist.npz"] == 2
    assert listing(tmp_path) == ["mnist.npz"]  # what was there is left as it was


def test_cifar_download_that_is_not_a_tar_gz_is_refused(server: Server, tmp_path: Path):
    zipped = payload(seed=22)
    server.plan["/cifar.tar.gz"] = [("ok", zipped)]
    dataset = make_dataset(
        name="cifar", url=server.url("/cifar.tar.gz"), sha256=sha(zipped), format="cifar10-python"
    )
    with pytest.raises(DownloadError, match=r"cifar\.tar\.gz: not a valid tar\.gz archive"):
        fetch(dataset, tmp_path, **FAST)

"""The browser annotation page: one digit crop at a time, one key press per label.

A small HTTP server on 127.0.0.1 serves the page (static/annotate.html + annotate.js), the
crop images, and a JSON API. Every label is written to the labels file before the answer
goes back, so closing the tab or stopping the server loses nothing: the next session starts
at the first unlabelled crop. When the last crop is labelled the server stops by itself.

    GET  /                 the page
    GET  /api/state        progress, the crop to label now, the last label given
    GET  /crop/<n>.png     crop n, enlarged;  /context/<n>.png: its captcha, the digit boxed
    POST /api/label        {"id": crop id, "label": "0".."9" or "skip"}
    POST /api/undo         take back the last label

Listening on 127.0.0.1 keeps other machines out, not other web pages: any site open in the
same browser may send requests to it, and the labels are training data. So every request must
name the bound address as its Host (a DNS-rebinding page names its own), a request that says
where it comes from (Origin) must come from the page itself, every API call and image must
carry the token of this run (printed in the page's address, as Jupyter does, and sent back by
the page in the X-Annotate-Token header or, for images, the address), and a POST must be
`application/json`. Anything else is answered 403 and changes nothing.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs

import cv2
import numpy as np

from dl4cv.captcha.download import IMAGES, decode_file
from dl4cv.captcha.labels import Crop, LabelStore
from dl4cv.captcha.segment import BOOK, crop_digit
from dl4cv.config import CaptchaSegment

log = logging.getLogger(__name__)

STATIC = {
    "/": ("annotate.html", "text/html; charset=utf-8"),
    "/annotate.js": ("annotate.js", "text/javascript; charset=utf-8"),
}
CROP_HEIGHT = 160  # pixels: a digit crop is ~35 px tall, too small to read comfortably
CONTEXT_SCALE = 3
TOKEN_HEADER = "X-Annotate-Token"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class AnnotationServer:
    def __init__(
        self,
        raw: Path,
        store: LabelStore,
        spec: CaptchaSegment = BOOK,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
    ) -> None:
        self.raw = raw
        self.token = token or secrets.token_urlsafe(24)
        self.store = store
        self.spec = spec
        self._lock = threading.Lock()
        self._images: dict[str, np.ndarray] = {}
        self._index = {crop.id: i for i, crop in enumerate(store.crops)}
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        self.httpd.daemon_threads = True

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def url(self) -> str:
        """The page's address, with this run's token: the one to open."""
        return f"{self.base}?token={self.token}"

    def hosts(self) -> set[str]:
        """The Host headers a request from the page carries: the bound address (and its
        other loopback names when bound to loopback)."""
        host, port = self.httpd.server_address[:2]
        names = LOOPBACK if host in LOOPBACK else (host,)
        return {f"[{name}]:{port}" if ":" in name else f"{name}:{port}" for name in names}

    def refusal(
        self, host: str | None, origin: str | None, token: str | None, need_token: bool = True
    ) -> str | None:
        """Why a request is refused (None: it may go on)."""
        if host not in self.hosts():
            return f"Host {host!r} is not this server"
        if origin is not None and origin != f"http://{host}":
            return f"Origin {origin!r} is not this page"
        if not need_token:
            return None
        if token is None or not hmac.compare_digest(token.encode(), self.token.encode()):
            return "missing or wrong token: open the address the annotate stage printed"
        return None

    def serve(self) -> None:
        """Serve until every crop is labelled (or `stop()`), then release the port."""
        try:
            if self.store.pending():
                self.httpd.serve_forever(poll_interval=0.2)
        finally:
            self.httpd.server_close()

    def start(self) -> threading.Thread:
        """`serve()` in a background thread (tests, notebooks)."""
        thread = threading.Thread(target=self.serve, name="annotation-server", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.httpd.shutdown()

    # The API, called from the handler threads.

    def state(self) -> dict:
        with self._lock:
            return self._state()

    def _state(self) -> dict:
        pending = self.store.pending()
        current = pending[0] if pending else None
        last = self.store.rows[-1] if self.store.rows else None
        return {
            "total": len(self.store.crops),
            "labelled": len(self.store.rows),
            "done": current is None,
            "labels_file": str(self.store.path),
            "current": self._describe(current) if current else None,
            "last": {**self._describe(last[0]), "label": last[1]} if last else None,
        }

    def _describe(self, crop: Crop) -> dict:
        return {
            "id": crop.id,
            "index": self._index[crop.id],
            "file": crop.file,
            "digit": crop.digit,
        }

    def label(self, crop_id: str, label: str) -> tuple[HTTPStatus, dict]:
        with self._lock:
            pending = self.store.pending()
            if not pending or pending[0].id != crop_id:
                # a second press for a crop already labelled, or a page from before an undo
                return HTTPStatus.CONFLICT, self._state()
            try:
                self.store.label(pending[0], label)
            except ValueError as exc:
                return HTTPStatus.BAD_REQUEST, {**self._state(), "error": str(exc)}
            state = self._state()
        if state["done"]:
            log.info("all %d crops labelled; stopping the server", state["total"])
            threading.Thread(target=self.stop, daemon=True).start()
        return HTTPStatus.OK, state

    def undo(self) -> dict:
        with self._lock:
            undone = self.store.undo()
            state = self._state()
        if undone:
            state["undone"] = {**self._describe(undone[0]), "label": undone[1]}
        return state

    def png(self, kind: str, index: int) -> bytes:
        crop = self.store.crops[index]
        image = self._image(crop.file)
        if kind == "crop":
            digit = crop_digit(image, crop.box, self.spec)
            scale = CROP_HEIGHT / digit.shape[0]
            picture = cv2.resize(digit, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        else:
            picture = cv2.resize(
                image, None, fx=CONTEXT_SCALE, fy=CONTEXT_SCALE, interpolation=cv2.INTER_NEAREST
            )
            b = crop.box
            corner1 = (b.x * CONTEXT_SCALE - 2, b.y * CONTEXT_SCALE - 2)
            corner2 = ((b.x + b.w) * CONTEXT_SCALE + 1, (b.y + b.h) * CONTEXT_SCALE + 1)
            cv2.rectangle(picture, corner1, corner2, (0, 0, 255), 2)
        ok, encoded = cv2.imencode(".png", picture)
        if not ok:
            raise ValueError(f"could not encode {crop.id} as PNG")
        return encoded.tobytes()

    def _image(self, file: str) -> np.ndarray:
        with self._lock:
            if file not in self._images:
                self._images[file] = decode_file(self.raw / IMAGES / file)
            return self._images[file]


def _handler(app: AnnotationServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path, _, query = self.path.partition("?")
            if path in STATIC:  # the page holds no data: it needs no token
                if self._refused(need_token=False):
                    return
                name, kind = STATIC[path]
                body = resources.files("dl4cv.captcha").joinpath(f"static/{name}").read_bytes()
                self._send(HTTPStatus.OK, body, kind)
            elif path == "/api/state":
                if not self._refused():
                    self._json(HTTPStatus.OK, app.state())
            elif (image := _image_request(path, len(app.store.crops))) is not None:
                token = parse_qs(query).get("token", [None])[0]
                if not self._refused(token=token):
                    self._send(HTTPStatus.OK, app.png(*image), "image/png")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})

        def do_POST(self) -> None:  # noqa: N802
            if self._refused():
                return
            kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if kind != "application/json":
                self._forbid(f"a POST must be application/json, not {kind or 'untyped'}")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
            except (ValueError, json.JSONDecodeError):
                self._json(HTTPStatus.BAD_REQUEST, {"error": "expected a JSON body"})
                return
            if self.path == "/api/label" and isinstance(body, dict):
                label = str(body.get("label", ""))
                self._json(*app.label(str(body.get("id", "")), label))
            elif self.path == "/api/undo":
                self._json(HTTPStatus.OK, app.undo())
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such action: {self.path}"})

        def _refused(self, token: str | None = None, need_token: bool = True) -> bool:
            """Answer 403 and return True unless Host, Origin and token are the page's."""
            token = token if token is not None else self.headers.get(TOKEN_HEADER)
            headers = self.headers.get("Host"), self.headers.get("Origin")
            why = app.refusal(*headers, token, need_token)
            if why is not None:
                self._forbid(why)
            return why is not None

        def _forbid(self, why: str) -> None:
            log.warning(
                "refused %s %s from %s: %s",
                self.command,
                self.path.split("?")[0],
                self.headers.get("Origin") or "no Origin",
                why,
            )
            self._json(HTTPStatus.FORBIDDEN, {"error": why})

        def _json(self, status: HTTPStatus, data: dict) -> None:
            self._send(status, json.dumps(data).encode(), "application/json")

        def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Referrer-Policy", "no-referrer")  # the token stays on the page
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


def _image_request(path: str, count: int) -> tuple[str, int] | None:
    """("crop" | "context", n) for /crop/<n>.png or /context/<n>.png with n a crop index."""
    parts = path.strip("/").split("/")
    if len(parts) != 2 or parts[0] not in ("crop", "context") or not parts[1].endswith(".png"):
        return None
    number = parts[1][: -len(".png")]
    if not number.isdigit() or int(number) >= count:
        return None
    return parts[0], int(number)

"""Ch 21 annotation: labels from known texts, the labels file, and the browser page driven in
headless Chromium the way a person uses it (key presses, undo, reload, an interrupted session).

Browser tests are skipped only outside CI when Chromium, its driver or selenium is missing;
with CI set they fail instead, so CI never passes without running them.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from dl4cv.captcha.download import IMAGES, fetch_captchas
from dl4cv.captcha.labels import (
    SKIP,
    Crop,
    LabelStore,
    labels_from_truth,
    read_labels,
    segment_folder,
)
from dl4cv.captcha.server import AnnotationServer
from dl4cv.config import CaptchaSegment, CaptchaSource
from dl4cv.data.sources import DownloadError

SPEC = CaptchaSegment()


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    """Three generated captchas (12 digit crops) and one that cannot split into digits."""
    folder = tmp_path / "raw"
    fetch_captchas(CaptchaSource(count=3, seed=4), folder, progress=False)
    blank = np.full((48, 144, 3), 230, np.uint8)
    cv2.imwrite(str(folder / IMAGES / "99999.png"), blank)
    (folder / IMAGES / "broken.png").write_bytes(b"\x89PNG\r\n truncated")
    return folder


def rows(path: Path) -> list[tuple[str, int, str]]:
    return [(r["file"], r["digit"], r["label"]) for r in read_labels(path)]


def truth(raw: Path) -> dict[str, str]:
    with open(raw / "truth.csv", newline="") as fh:
        return {r["file"]: r["text"] for r in csv.DictReader(fh)}


def test_segment_folder_reports_what_does_not_split(raw):
    crops, rejects = segment_folder(raw, SPEC, progress=False)
    assert len(crops) == 12
    assert [c.id for c in crops[:5]] == [
        "00000.png#0",
        "00000.png#1",
        "00000.png#2",
        "00000.png#3",
        "00001.png#0",
    ]
    reasons = {r.name: r.reason for r in rejects}
    assert set(reasons) == {"99999.png", "broken.png"}
    assert reasons["broken.png"].startswith("not a decodable image")
    assert "contours" in reasons["99999.png"]


def test_labels_from_truth_take_each_digit_of_the_known_text(raw, tmp_path):
    crops, _ = segment_folder(raw, SPEC, progress=False)
    texts = truth(raw)
    labelled, rejects = labels_from_truth(crops, raw / "truth.csv", 4)
    assert [(c.id, label) for c, label in labelled] == [
        (f"{f}#{i}", texts[f][i]) for f in sorted(texts) for i in range(4)
    ]
    assert rejects == []
    partial = tmp_path / "labels.csv"
    partial.write_text("file,text\n00000.png,1234\n00001.png,12x4\n")
    labelled, rejects = labels_from_truth(crops, partial, 4)
    assert {c.file for c, _ in labelled} == {"00000.png"}
    assert sorted((r.name, r.reason.split(" in ")[0]) for r in rejects) == [
        ("00001.png", "text '12x4'"),
        ("00002.png", "no text for it"),
    ]


def test_label_store_saves_each_label_undoes_and_resumes(raw, tmp_path):
    crops, _ = segment_folder(raw, SPEC, progress=False)
    path = tmp_path / "labels" / "captcha.csv"
    store = LabelStore(path, crops)
    store.label(crops[0], "5")
    store.label(crops[1], SKIP)
    assert rows(path) == [("00000.png", 0, "5"), ("00000.png", 1, "skip")]
    with pytest.raises(ValueError, match="labelled already"):
        store.label(crops[0], "6")
    with pytest.raises(ValueError, match="one digit"):
        store.label(crops[2], "55")
    again = LabelStore(path, crops)  # a new session
    assert again.pending()[0] == crops[2]
    assert again.undo() == (crops[1], SKIP)
    assert rows(path) == [("00000.png", 0, "5")]
    # a crop whose captcha now segments differently loses its label
    moved = [Crop(crops[0].file, 0, crops[1].box), *crops[1:]]
    assert LabelStore(path, moved).rows == []
    assert rows(path) == []


def test_a_broken_labels_file_is_named(tmp_path):
    path = tmp_path / "captcha.csv"
    path.write_text("file,digit,x,y,w,h,label\n00000.png,0,1,2,3,4,A\n")
    with pytest.raises(DownloadError, match=r"captcha.csv:2: label 'A'"):
        read_labels(path)
    path.write_text("file,label\n")
    with pytest.raises(DownloadError, match="expected the columns"):
        read_labels(path)


def test_server_api_refuses_stale_and_bad_labels(raw, tmp_path):
    crops, _ = segment_folder(raw, SPEC, progress=False)
    app = AnnotationServer(raw, LabelStore(tmp_path / "l.csv", crops), SPEC)
    thread = app.start()
    try:
        state = call(app, "GET", "api/state")[1]
        assert (state["labelled"], state["total"], state["current"]["id"]) == (0, 12, crops[0].id)
        assert call(app, "POST", "api/label", {"id": crops[1].id, "label": "3"})[0] == 409
        assert call(app, "POST", "api/label", {"id": crops[0].id, "label": "x"})[0] == 400
        code, state = call(app, "POST", "api/label", {"id": crops[0].id, "label": "3"})
        assert (code, state["labelled"], state["last"]["label"]) == (200, 1, "3")
        with urllib.request.urlopen(f"{app.base}crop/0.png?token={app.token}") as response:
            crop = cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR)
        assert crop.shape[0] == 160
        assert call(app, "GET", "crop/12.png")[0] == 404
    finally:
        app.stop()
        thread.join(5)


def test_requests_another_page_can_send_are_refused_and_write_nothing(raw, tmp_path):
    """What any web site open in the same browser can send to 127.0.0.1 (a 'simple' cross-site
    POST, a DNS-rebinding page's Host), and requests without this run's token: 403, and the
    labels file stays byte for byte as it was."""
    crops, _ = segment_folder(raw, SPEC, progress=False)
    labels = tmp_path / "l.csv"
    app = AnnotationServer(raw, LabelStore(labels, crops), SPEC)
    thread = app.start()
    port = app.httpd.server_address[1]
    evil = {"Origin": "http://evil.example"}
    label = {"id": crops[0].id, "label": "7"}
    try:
        assert call(app, "POST", "api/label", {"id": crops[0].id, "label": "3"})[0] == 200
        before = labels.read_bytes()
        refused = {
            "cross-site text/plain POST": call(
                app, "POST", "api/label", label, token=None, kind="text/plain;charset=UTF-8", **evil
            ),
            "cross-site undo": call(app, "POST", "api/undo", {}, token=None, **evil),
            "foreign Origin with the token": call(app, "POST", "api/label", label, **evil),
            "text/plain with the token": call(app, "POST", "api/label", label, kind="text/plain"),
            "no token": call(app, "POST", "api/label", label, token=None),
            "wrong token": call(app, "POST", "api/label", label, token="guess"),
            "DNS rebinding: foreign Host": call(
                app, "GET", "api/state", Host=f"rebind.example:{port}"
            ),
            "state without token": call(app, "GET", "api/state", token=None),
            "image without token": call(app, "GET", "crop/0.png", token=None),
        }
        answers = {what: code for what, (code, _) in refused.items()}
        assert answers == dict.fromkeys(refused, 403)
        assert all("labels_file" not in body for _, body in refused.values())
        assert labels.read_bytes() == before
        # the page itself: its own Origin, JSON, the token
        own = {"Origin": f"http://127.0.0.1:{port}"}
        code, state = call(app, "POST", "api/label", {"id": crops[1].id, "label": "5"}, **own)
        assert (code, state["labelled"]) == (200, 2)
        assert labels.read_bytes() != before  # saved before the answer came back
    finally:
        app.stop()
        thread.join(5)


def call(
    app: AnnotationServer,
    method: str,
    path: str,
    body: dict | None = None,
    token: str | None = "",
    kind: str = "application/json",
    **headers: str,
) -> tuple[int, dict]:
    """A request to the server, as the page sends it unless told otherwise: this run's token
    (token="" means the right one, None none), a JSON body for a POST."""
    headers = {"X-Annotate-Token": app.token if token == "" else token, **headers}
    headers = {k: v for k, v in headers.items() if v is not None}
    data = None
    if method == "POST":
        data = json.dumps(body or {}).encode()
        headers["Content-Type"] = kind
    request = urllib.request.Request(app.base + path, data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            raw = response.read()
            code = response.status
    except urllib.error.HTTPError as exc:
        raw, code = exc.read(), exc.code
    try:
        return code, json.loads(raw)
    except ValueError:
        return code, {}


# The page in a real browser.


def _browser_or_skip() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        chromium = None
    if chromium and driver:
        return chromium, driver
    why = "headless Chromium, chromedriver and selenium are needed for the annotation page test"
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI is set: install chromium chromium-driver, pip install selenium)")
    pytest.skip(why)


@pytest.fixture
def browser() -> Iterator:
    chromium, driver_path = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-")
    options = webdriver.ChromeOptions()
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.binary_location = chromium
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def press(driver, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(keys).perform()


def wait_for(driver, labelled: int) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(
        lambda d: d.find_element("tag name", "body").get_attribute("data-labelled") == str(labelled)
    )


def showing(driver) -> str:
    """The crop on screen, once its image has loaded."""
    from selenium.webdriver.support.ui import WebDriverWait

    crop = driver.find_element("id", "crop")
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth", crop
        )
    )
    return crop.get_attribute("data-id")


def test_labelling_in_the_browser_with_undo_reload_and_a_restart(raw, tmp_path, browser):
    from selenium.webdriver.common.keys import Keys

    crops, _ = segment_folder(raw, SPEC, progress=False)
    path = tmp_path / "captcha.csv"
    app = AnnotationServer(raw, LabelStore(path, crops), SPEC)
    thread = app.start()
    browser.get(app.url)  # the address the stage prints, with this run's token
    wait_for(browser, 0)
    assert showing(browser) == crops[0].id
    assert "0 / 12 labelled" in browser.find_element("id", "progress").text
    loaded = (
        "return ['crop', 'context'].map((id) => document.getElementById(id))"
        ".map((img) => img.complete && img.naturalWidth)"
    )
    deadline = time.monotonic() + 10
    while not all(browser.execute_script(loaded)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(browser.execute_script(loaded))  # the images came, token and all

    press(browser, "3")
    wait_for(browser, 1)
    assert rows(path) == [("00000.png", 0, "3")]
    assert showing(browser) == crops[1].id

    press(browser, "75")  # typed quickly: both arrive, in order
    wait_for(browser, 3)
    assert [r[2] for r in rows(path)] == ["3", "7", "5"]

    press(browser, Keys.BACKSPACE)
    wait_for(browser, 2)
    assert [r[2] for r in rows(path)] == ["3", "7"]
    assert showing(browser) == crops[2].id  # the undone crop comes back
    assert "was 5" in browser.find_element("id", "message").text

    press(browser, " ")
    wait_for(browser, 3)
    assert rows(path)[-1] == ("00000.png", 2, SKIP)

    browser.refresh()  # a reload resumes where it stopped
    wait_for(browser, 3)
    assert showing(browser) == crops[3].id

    app.stop()  # the session is interrupted...
    thread.join(5)
    assert rows(path) == [("00000.png", 0, "3"), ("00000.png", 1, "7"), ("00000.png", 2, SKIP)]
    app = AnnotationServer(raw, LabelStore(path, crops), SPEC)  # ...and started again
    thread = app.start()
    browser.get(app.url)
    wait_for(browser, 3)
    assert showing(browser) == crops[3].id

    press(browser, "412345678")  # the last 9 crops
    wait_for(browser, 12)
    thread.join(5)
    assert not thread.is_alive()  # everything labelled: the server stopped by itself
    assert browser.find_element("id", "done").is_displayed()
    labels = rows(path)
    assert len(labels) == 12 and [r[2] for r in labels[3:]] == list("412345678")
    assert [(r[0], r[1]) for r in labels] == [(c.file, c.digit) for c in crops]

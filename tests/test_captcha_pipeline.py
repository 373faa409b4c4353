"""Ch 21 wiring: the captcha: section of params.yaml, the stages from captchas to a solved
record (real LeNet training, real MLflow store), and the solver with a real classifier."""

from __future__ import annotations

import copy
import csv
import json
import logging
import re
import socket
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from sklearn.neighbors import KNeighborsClassifier

from dl4cv.captcha.download import IMAGES, TRUTH
from dl4cv.captcha.generator import CaptchaGenerator
from dl4cv.captcha.segment import find_digits
from dl4cv.captcha.solve import CaptchaSolver, draw_grid
from dl4cv.config import CaptchaSegment, ConfigError, ImageSpec, parse_params
from dl4cv.data.sources import DownloadError
from dl4cv.pipeline import annotate, captcha_download, captcha_preprocess, solve, split, train
from dl4cv.runtime.fileio import read_json
from dl4cv.runtime.paths import label_rejects_file, labels_file, raw_dir, report_dir
from tests.conftest import REPO, toy_params

CLASSES = list("123456789")


def captcha_params(**captcha: dict) -> dict:
    raw = toy_params(
        {
            "captcha_breaker": {
                "chapter": 21,
                "dataset": "captcha",
                "model": {"name": "lenet"},
                "optimizer": {"name": "sgd", "learning_rate": 0.05},
                "train": {"batch_size": 16, "epochs": 2},
            }
        }
    )
    raw["captcha"] = {"source": {"count": 24, "seed": 3}, "solve": {"count": 12, "grid": 4}}
    for key, value in captcha.items():
        raw["captcha"][key] = {**raw["captcha"].get(key, {}), **value}
    return raw


def test_repo_params_declare_the_book_settings():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    book = parse_params({**copy.deepcopy(raw), "profile": "book"})
    quick = parse_params({**copy.deepcopy(raw), "profile": "quick"})
    dataset = book.dataset("captcha")
    assert (dataset.image.width, dataset.image.height, dataset.image.channels) == (28, 28, 1)
    assert (dataset.split.method, dataset.split.test_size, dataset.split.random_state) == (
        "random",
        0.25,
        42,
    )
    assert (book.captcha.source.kind, book.captcha.source.count) == ("generator", 500)
    assert book.captcha.annotate.method == "file"  # dvc repro runs unattended
    exp = book.experiment("captcha_breaker")
    assert (exp.dataset, exp.model.name, exp.optimizer.name) == ("captcha", "lenet", "sgd")
    assert (exp.optimizer.learning_rate, exp.train.epochs, exp.train.batch_size) == (0.01, 15, 32)
    assert quick.captcha.source.count < book.captcha.source.count
    assert quick.captcha.solve.count < book.captcha.solve.count
    assert "captcha" in book.dataset_names() and "captcha" not in book.datasets


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"source": {"kind": "http"}}, "captcha.source.url: kind 'http' needs"),
        (
            {"source": {"kind": "http", "url": "http://127.0.0.1:1/c"}},
            "captcha.annotate.labels: method 'file' needs",
        ),
        ({"solve": {"seed": 3}}, "captcha.solve.seed: must differ from source.seed"),
        ({"solve": {"experiment": "nope"}}, "captcha.solve.experiment: 'nope' is not"),
        (
            {"image": {"width": 28, "height": 28, "channels": 3}},
            "captcha.image.channels: digit crops are grayscale",
        ),
        ({"segment": {"min_height_ratio": 2}}, "captcha.segment.min_height_ratio"),
        ({"segment": {"digits": 5}}, "captcha.segment.digits: the generator draws 1 to 4"),
        ({"annotate": {"method": "mouse"}}, "captcha.annotate.method: expected one of"),
        ({"source": {"quick": {"cont": 5}}}, "captcha.source.cont: unknown key"),
    ],
)
def test_captcha_section_errors_name_their_key(change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_params(captcha_params(**change))


def test_the_captcha_dataset_needs_its_section():
    raw = captcha_params()
    del raw["captcha"]
    with pytest.raises(ConfigError, match="'captcha' is not one of the declared datasets"):
        parse_params(raw)
    raw = captcha_params()
    raw["datasets"]["captcha"] = raw["datasets"].pop("toy")
    with pytest.raises(ConfigError, match="datasets.captcha: the captcha dataset is declared by"):
        parse_params(raw)
    quick = parse_params({**captcha_params(source={"quick": {"count": 8}}), "profile": "quick"})
    assert quick.captcha.source.count == 8


def test_the_stages_from_captchas_to_solved_captchas(in_tmp, mlflow_store):
    params = parse_params(captcha_params())
    fetched = captcha_download.run(params)
    assert (
        fetched.origin == "generator" and len(list((raw_dir("captcha") / IMAGES).iterdir())) == 24
    )
    blank = np.full((48, 144, 3), 230, np.uint8)  # a captcha that cannot split: reported
    cv2.imwrite(str(raw_dir("captcha") / IMAGES / "00024.png"), blank)

    summary = annotate.run(params)
    assert (summary["captchas"], summary["segmented"], summary["crops_labelled"]) == (25, 24, 96)
    with open(label_rejects_file("captcha"), newline="") as fh:
        assert [r["file"] for r in csv.DictReader(fh)] == ["00024.png"]

    processed = captcha_preprocess.run(params)
    assert processed.images.shape == (96, 28, 28, 1) and processed.images.dtype == np.uint8
    assert set(processed.classes) <= set(CLASSES)
    with open(raw_dir("captcha") / TRUTH, newline="") as fh:
        texts = {r["file"]: r["text"] for r in csv.DictReader(fh)}
    for crop_id, label in zip(processed.ids, processed.labels, strict=True):
        file, digit = crop_id.split("#")
        assert processed.classes[label] == texts[file][int(digit)]
    assert [r.name for r in processed.rejects] == ["00024.png"]
    split.run("captcha", params)

    info = train.run("captcha_breaker", params)
    metrics = solve.run(params)
    record = read_json(report_dir("captcha_solve") / "metrics.json")
    assert record == json.loads(json.dumps(metrics))
    for key in ("experiment", "chapter", "profile", "mlflow_run_id", "wall_seconds"):
        assert key in record
    assert (record["experiment"], record["chapter"], record["captchas"]) == (
        "captcha_solve",
        21,
        12,
    )
    # a solved captcha has all its digits right: captcha accuracy cannot beat digit accuracy
    assert 0 <= record["captcha_accuracy"] <= record["digit_accuracy"] <= 1
    report = (report_dir("captcha_solve") / "report.txt").read_text()
    misread = report.split("misread captchas")[1].splitlines()[1:]
    solved = round(record["captcha_accuracy"] * 12)
    assert len(misread) == 12 - solved or (solved == 12 and misread == ["  none"])
    assert record["digit_support"] == 4 * record["segmented"]
    grid = cv2.imread(str(report_dir("captcha_solve") / "solve_grid.png"))
    assert grid is not None and grid.shape[1] > 4 * 144
    run = MlflowClient(mlflow_store).get_run(record["mlflow_run_id"])
    assert run.info.run_name == "captcha_solve"
    assert run.data.tags["model_run_id"] == info["run_id"]
    assert run.data.metrics["captcha_accuracy"] == pytest.approx(record["captcha_accuracy"])

    image = raw_dir("captcha") / IMAGES / "00003.png"
    image.write_bytes(image.read_bytes()[:-20])  # changed after download: refused
    with pytest.raises(DownloadError, match="00003.png: differs from its download"):
        captcha_preprocess.run(params)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_annotate_stage_in_browser_mode_serves_until_everything_is_labelled(in_tmp, caplog):
    caplog.set_level(logging.INFO)
    port = free_port()
    params = parse_params(
        captcha_params(source={"count": 2}, annotate={"method": "browser", "port": port})
    )
    captcha_download.run(params)
    stage = threading.Thread(target=annotate.run, args=(params,))
    stage.start()
    printed = None  # the address the stage prints, with this run's token, as a person reads it
    for _ in range(200):
        printed = re.search(rf"open (http://127\.0\.0\.1:{port}/\?token=(\S+)) ", caplog.text)
        if printed:
            break
        time.sleep(0.05)
    assert printed, caplog.text
    url, token = f"http://127.0.0.1:{port}/api/", printed[2]
    headers = {"X-Annotate-Token": token, "Content-Type": "application/json"}
    state = None
    for _ in range(100):
        try:
            request = urllib.request.Request(url + "state", headers=headers)
            with urllib.request.urlopen(request, timeout=2) as response:
                state = json.load(response)
            break
        except urllib.error.URLError:
            time.sleep(0.05)
    assert state is not None and state["total"] == 8
    texts = [CaptchaGenerator(3).render(i).text for i in range(2)]
    while not state["done"]:
        current = state["current"]
        body = {"id": current["id"], "label": texts[int(current["file"][:5])][current["digit"]]}
        data = json.dumps(body).encode()
        request = urllib.request.Request(url + "label", data, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            state = json.load(response)
    stage.join(10)
    assert not stage.is_alive()
    with open(labels_file("captcha"), newline="") as fh:
        labels = [r["label"] for r in csv.DictReader(fh)]
    assert "".join(labels) == "".join(texts)
    annotate.run(params)  # nothing left to label: returns at once, file unchanged
    assert labels_file("captcha").read_text().count("\n") == 9


def test_solver_reads_new_captchas_with_a_real_classifier():
    segment, image = CaptchaSegment(), ImageSpec(28, 28, 1)
    solver = CaptchaSolver(lambda x: x, CLASSES, segment, image)
    crops, labels = [], []
    for captcha in map(CaptchaGenerator(1).render, range(60)):
        crops.append(solver.digits(captcha.image, find_digits(captcha.image, segment)))
        labels += [CLASSES.index(ch) for ch in captcha.text]
    x = np.concatenate(crops).reshape(len(labels), -1)
    knn = KNeighborsClassifier(1).fit(x, labels)
    solver.predict = lambda batch: np.eye(len(CLASSES))[
        knn.predict(batch.reshape(len(batch), -1) * 255)
    ]

    new = [CaptchaGenerator(2).render(i) for i in range(30)]
    blank = np.full((48, 144, 3), 230, np.uint8)
    solutions = solver.solve([c.image for c in new] + [blank])
    right = [s.text == c.text for s, c in zip(solutions, new, strict=False)]
    assert sum(right) >= 25, [(s.text, c.text) for s, c in zip(solutions, new, strict=False)]
    assert solutions[-1].text is None and "contours" in solutions[-1].error
    assert all(len(s.boxes) == 4 for s in solutions[:-1])
    grid = draw_grid(
        [c.image for c in new[:5]] + [blank],
        [c.text for c in new[:5]] + ["1234"],
        solutions[:5] + solutions[-1:],
        columns=3,
    )
    assert grid.shape == (2 * (96 + 50), 3 * (288 + 12), 3)

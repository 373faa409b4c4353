"""Ch 20: pre-trained ImageNet networks, run offline with random or locally saved weights."""

from __future__ import annotations

import csv
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from sklearn.datasets import load_sample_images

from dl4cv.config import ConfigError, parse_params
from dl4cv.imagenet import (
    CLASS_INDEX_FILE,
    CLASS_INDEX_MD5,
    CLASS_INDEX_URL,
    NETWORKS,
    MissingFilesError,
    image_files,
    load_class_index,
    locate_files,
    read_images,
)
from dl4cv.pipeline import imagenet as stage
from tests.conftest import REPO, encode, toy_params

REPORT = Path("reports/experiments/imagenet_pretrained")


def imagenet_params(**section) -> dict:
    return {**toy_params({}), "imagenet": section}


def write_labels(path: Path) -> Path:
    """A class index shaped like Keras' imagenet_class_index.json, with made-up labels."""
    path.write_text(json.dumps({str(i): [f"n{i:08d}", f"label_{i}"] for i in range(1000)}))
    return path


def run_stage(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / "imagenet.py"), "imagenet_pretrained"],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_registry_matches_keras_applications() -> None:
    """Input size, weights file, URL and md5 are Keras' own, and each network gets its own
    preprocessing: caffe-style BGR mean subtraction or scaling to [-1, 1]."""
    import keras

    assert {n: net.input_size for n, net in NETWORKS.items()} == {
        "vgg16": 224,
        "vgg19": 224,
        "resnet50": 224,
        "inception_v3": 299,
        "xception": 299,
    }
    for network in NETWORKS.values():
        module = inspect.getmodule(getattr(keras.applications, network.constructor))
        source = inspect.getsource(module)
        assert f"default_size={network.input_size}" in source
        assert network.weights_md5 in source
        if network.name == "resnet50":  # Keras builds the ResNet file names from a template
            assert module.BASE_WEIGHTS_PATH + network.weights_file == network.weights_url
            assert module.WEIGHTS_HASHES["resnet50"][0] == network.weights_md5
            assert 'f"{weights_name}_weights_tf_dim_ordering_tf_kernels.h5"' in source
        else:
            assert network.weights_url == module.WEIGHTS_PATH
            assert f'"{network.weights_file}",' in source  # the name get_file caches it under

    red = np.zeros((1, 2, 2, 3), "float32")
    red[..., 0] = 255  # RGB
    for name in ("vgg16", "vgg19", "resnet50"):  # RGB -> BGR, minus the ImageNet means
        out = NETWORKS[name].preprocess(red.copy())
        np.testing.assert_allclose(out[0, 0, 0], [-103.939, -116.779, 255 - 123.68], atol=1e-3)
    for name in ("inception_v3", "xception"):
        out = NETWORKS[name].preprocess(red.copy())
        np.testing.assert_allclose(out[0, 0, 0], [1.0, -1.0, -1.0])
    assert CLASS_INDEX_URL == keras.src.applications.imagenet_utils.CLASS_INDEX_PATH
    assert CLASS_INDEX_MD5 in inspect.getsource(keras.src.applications.imagenet_utils)


def test_disabled_stage_writes_a_skipped_record_and_exits_0(in_tmp: Path) -> None:
    Path("params.yaml").write_text(yaml.safe_dump(imagenet_params(enabled=False)))
    done = run_stage(in_tmp, {"KERAS_HOME": str(in_tmp / "no-keras")})
    assert done.returncode == 0, done.stderr
    metrics = json.loads((REPORT / "metrics.json").read_text())
    assert metrics["skipped"] is True
    assert metrics["experiment"] == "imagenet_pretrained" and metrics["chapter"] == 20
    assert metrics["mlflow_run_id"] is None and metrics["images"] == 0
    assert "imagenet.enabled" in metrics["reason"]
    assert "imagenet.enabled=true" in (REPORT / "report.txt").read_text()
    # every output dvc.yaml declares exists, so `dvc repro` records the stage as done
    assert (REPORT / "annotated").is_dir() and not any((REPORT / "annotated").iterdir())
    assert (REPORT / "rejects.csv").read_text().strip() == "file,reason"
    assert json.loads((REPORT / "predictions.json").read_text()) == {}
    assert not Path("mlflow.db").exists()


def test_missing_weights_stop_the_stage_before_any_work(in_tmp: Path) -> None:
    Path("params.yaml").write_text(yaml.safe_dump(imagenet_params(enabled=True)))
    keras_home = in_tmp / "empty-keras-home"
    keras_home.mkdir()
    db = in_tmp / "mlflow.db"
    done = run_stage(
        in_tmp, {"KERAS_HOME": str(keras_home), "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    )
    assert done.returncode == 1
    message = done.stderr
    assert message.count("ERROR") == 1 and "Traceback" not in message
    cache = f"{keras_home / 'models'}/"
    assert cache in message
    for name, network in NETWORKS.items():
        assert f"{name}: {network.weights_file} from {network.weights_url}" in message
        assert f"imagenet.weights.{name}: /path/to/file" in message
    assert f"{CLASS_INDEX_FILE} from {CLASS_INDEX_URL}" in message
    assert "imagenet.enabled: false" in message
    assert not Path("reports").exists() and not db.exists()  # nothing written, nothing logged


def test_damaged_or_misnamed_files_are_reported_together(tmp_path: Path) -> None:
    """A cut-off download under Keras' name fails the md5 check; a path named in params must
    exist; both are in the one message, with the file found in weights_dir accepted."""
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    (weights_dir / NETWORKS["vgg16"].weights_file).write_bytes(b"half a download")
    labels = write_labels(weights_dir / CLASS_INDEX_FILE)  # not Keras' bytes either
    settings = parse_params(
        imagenet_params(
            enabled=True,
            models=["vgg16", "xception", "resnet50"],
            weights_dir=str(weights_dir),
            weights={"xception": str(tmp_path / "nowhere.h5"), "resnet50": "random"},
        )
    ).imagenet
    with pytest.raises(MissingFilesError) as err:
        locate_files(settings, cache=tmp_path / "cache")
    message = str(err.value)
    assert f"vgg16: {weights_dir / NETWORKS['vgg16'].weights_file}: md5 " in message
    assert NETWORKS["vgg16"].weights_md5 in message
    assert (
        f"xception: imagenet.weights.xception: {tmp_path / 'nowhere.h5'} is not a file" in message
    )
    assert "resnet50" not in message
    assert f"ImageNet labels: {labels}: md5" in message

    # The same label file named in params is taken as it is.
    settings = parse_params(
        imagenet_params(
            enabled=True, models=["resnet50"], weights={"resnet50": "random"}, labels=str(labels)
        )
    ).imagenet
    weights, labels_file = locate_files(settings, cache=tmp_path / "cache")
    assert weights["resnet50"].path is None and weights["resnet50"].origin == "random"
    assert labels_file == labels


def test_params_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"imagenet\.weights: expected one of .*'vgg17'"):
        parse_params(imagenet_params(weights={"vgg17": "x.h5"}))
    with pytest.raises(ConfigError, match=r"imagenet\.top: expected an integer in 1\.\.1000"):
        parse_params(imagenet_params(top=0))
    with pytest.raises(ConfigError, match=r"imagenet\.models\[0\]: expected one of"):
        parse_params(imagenet_params(models=["alexnet"]))
    assert parse_params(toy_params({})).imagenet.enabled is False  # params without the section


def test_class_index_must_have_1000_labels(tmp_path: Path) -> None:
    good = write_labels(tmp_path / "good.json")
    assert load_class_index(good)[:2] == ["label_0", "label_1"]
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"0": ["n0", "tench"]}))
    with pytest.raises(ConfigError, match="keys '0'..'999'"):
        load_class_index(short)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({str(i): "tench" for i in range(1000)}))
    with pytest.raises(ConfigError, match=r"entry 0: expected \[wordnet_id, label\]"):
        load_class_index(bad)


def test_default_images_are_scikit_learns_photos_and_bad_files_are_set_aside(
    tmp_path: Path,
) -> None:
    defaults = image_files(None)
    assert [p.name for p in defaults] == ["china.jpg", "flower.jpg"]
    images, rejects = read_images(defaults)
    assert [im.shape for im in images.values()] == [(427, 640, 3), (427, 640, 3)]
    assert rejects == []

    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / ".hidden.jpg").write_bytes(b"ignored")
    (tmp_path / "sub").mkdir()
    files = image_files(str(tmp_path))
    assert [p.name for p in files] == ["empty.jpg"]
    images, rejects = read_images(files)
    assert images == {} and [(r.name, r.reason) for r in rejects] == [("empty.jpg", "empty file")]
    with pytest.raises(ConfigError, match="is not a folder"):
        image_files(str(tmp_path / "missing"))


def test_no_readable_image_is_an_error_before_any_network_is_built(
    in_tmp: Path, mlflow_store: str
) -> None:
    folder = in_tmp / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"not a jpeg")
    params = parse_params(
        imagenet_params(
            enabled=True,
            models=["resnet50"],
            images=str(folder),
            weights={"resnet50": "random"},
            labels=str(write_labels(in_tmp / "labels.json")),
        )
    )
    with pytest.raises(ConfigError, match="none of the 1 files is a readable image: a.jpg"):
        stage.run("imagenet_pretrained", params)
    assert not Path("reports").exists()


def test_classifies_images_end_to_end_with_a_224_and_a_299_network(
    in_tmp: Path, mlflow_store: str
) -> None:
    """ResNet50 (224) with weights from a local file, InceptionV3 (299) randomly initialised,
    over a folder of two real photos, a corrupt JPEG and a text file."""
    import keras
    from mlflow import MlflowClient

    from dl4cv.imagenet import ImageNetClassifier

    china, flower = load_sample_images().images  # RGB
    folder = in_tmp / "photos"
    folder.mkdir()
    (folder / "china.jpg").write_bytes(encode(cv2.cvtColor(china, cv2.COLOR_RGB2BGR), ".jpg"))
    (folder / "flower.png").write_bytes(encode(cv2.cvtColor(flower, cv2.COLOR_RGB2BGR), ".png"))
    jpeg = encode(cv2.cvtColor(china, cv2.COLOR_RGB2BGR), ".jpg")
    (folder / "broken.jpg").write_bytes(jpeg[:200])
    (folder / "notes.txt").write_text("not an image")
    labels_file = write_labels(in_tmp / "labels.json")

    # "Pre-trained" ResNet50 weights: a seeded random model saved to a file, as a user would
    # save fine-tuned weights; the stage must load exactly these.
    keras.utils.set_random_seed(7)
    resnet = keras.applications.ResNet50(weights=None)
    weights_file = in_tmp / "my-resnet50.weights.h5"
    resnet.save_weights(weights_file)
    images, _ = read_images([folder / "china.jpg"])
    classifier = ImageNetClassifier(NETWORKS["resnet50"], resnet, load_class_index(labels_file))
    # an eager call: the same numbers as the stage's compiled predict, without tracing the net
    expected = keras.ops.convert_to_numpy(resnet(classifier.prepare(images["china.jpg"])))[0]
    del resnet
    keras.backend.clear_session()

    params = parse_params(
        imagenet_params(
            enabled=True,
            models=["resnet50", "inception_v3"],
            images=str(folder),
            weights={"resnet50": str(weights_file), "inception_v3": "random"},
            labels=str(labels_file),
        )
    )
    metrics = stage.run("imagenet_pretrained", params)

    assert metrics == json.loads((REPORT / "metrics.json").read_text())
    assert metrics["skipped"] is False and metrics["chapter"] == 20
    assert metrics["images"] == 2 and metrics["rejected_images"] == 2
    assert metrics["models"] == ["resnet50", "inception_v3"]
    assert metrics["weights"] == {"resnet50": "file", "inception_v3": "random"}
    for name in ("resnet50", "inception_v3"):
        assert metrics["seconds_per_image"][name] > 0 and metrics["load_seconds"][name] > 0
    assert metrics["wall_seconds"] > 0

    predictions = json.loads((REPORT / "predictions.json").read_text())
    assert set(predictions) == {"china.jpg", "flower.png"}
    label_names = set(load_class_index(labels_file))
    for by_model in predictions.values():
        assert set(by_model) == {"resnet50", "inception_v3"}
        for top5 in by_model.values():
            probs = [p["probability"] for p in top5]
            assert len(top5) == 5 and {p["label"] for p in top5} <= label_names
            assert probs == sorted(probs, reverse=True) and min(probs) >= 0
            assert sum(probs) <= 1 + 1e-6
    got = predictions["china.jpg"]["resnet50"]
    best = np.argsort(expected)[::-1][:5]
    assert [p["label"] for p in got] == [f"label_{i}" for i in best]
    np.testing.assert_allclose([p["probability"] for p in got], expected[best], rtol=1e-4)

    report = (REPORT / "report.txt").read_text()
    for image in ("china.jpg", "flower.png"):
        section = report.split(f"\n{image}\n", 1)[1]
        for model, size in (("resnet50", 224), ("inception_v3", 299)):
            block = section.split(f"  {model} ({size}x{size}):\n", 1)[1].splitlines()[:5]
            top5 = predictions[image][model]
            assert [line.split()[:2] for line in block] == [
                [f"{rank}.", p["label"]] for rank, p in enumerate(top5, 1)
            ]
    assert "broken.jpg: not a decodable image" in report and "notes.txt" in report

    with (REPORT / "rejects.csv").open() as f:
        rejects = {row["file"]: row["reason"] for row in csv.DictReader(f)}
    assert set(rejects) == {"broken.jpg", "notes.txt"} and all(rejects.values())

    for image_name, original in (("china.jpg", china), ("flower.png", flower)):
        source = cv2.imdecode(np.fromfile(folder / image_name, np.uint8), cv2.IMREAD_COLOR)
        for model in ("resnet50", "inception_v3"):
            annotated = cv2.imread(str(REPORT / "annotated" / model / f"{image_name}.png"))
            assert annotated.shape == original.shape  # 640 wide already: drawn at full size
            # the text band at the top left changed; the rest is the photo, pixel for pixel
            assert np.abs(annotated[:100, :150].astype(int) - source[:100, :150]).mean() > 20
            np.testing.assert_array_equal(annotated[200:], source[200:])

    client = MlflowClient(mlflow_store)
    run = client.get_run(metrics["mlflow_run_id"])
    assert run.data.tags["mlflow.runName"] == "imagenet_pretrained"
    assert run.data.metrics["rejected_images"] == 2
    assert run.data.metrics["resnet50_seconds_per_image"] > 0
    assert run.data.params["imagenet.images"] == str(folder)
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/metrics.json", "report/report.txt", "report/annotated"} <= logged
    pngs = {a.path for a in client.list_artifacts(run.info.run_id, "report/annotated/resnet50")}
    assert pngs == {f"report/annotated/resnet50/{n}.png" for n in ("china.jpg", "flower.png")}

"""Networks pre-trained on ImageNet (book ch 20): VGG16, VGG19, ResNet50, InceptionV3, Xception.

Each network comes from `keras.applications` with its own input size (224x224 or 299x299) and
its own `preprocess_input` (VGG and ResNet: BGR mean subtraction; Inception and Xception: scale
to [-1, 1]); feeding one network another's input is a silent loss of accuracy, so the registry
below keeps the three together.

Nothing here downloads. The pipeline must run offline, so the files Keras would fetch are looked
up where Keras keeps them (`$KERAS_HOME/models/`, by default `~/.keras/models/`), in a folder
named in params.yaml, or at a path per network; when one is missing the stage stops before any
work with one message saying which file goes where and where Keras fetches it from.

Keras is imported only once a network is built: checking the files needs none of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from dl4cv.config import ConfigError, ImageNet
from dl4cv.data.loaders import Reject
from dl4cv.preprocessing import DecodeError, ImageDecoder

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

KERAS_APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications"
CLASS_INDEX_FILE = "imagenet_class_index.json"
CLASS_INDEX_URL = f"https://storage.googleapis.com/download.tensorflow.org/data/{CLASS_INDEX_FILE}"
CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"
NUM_CLASSES = 1000
RANDOM = "random"  # imagenet.weights.<model>: random -> untrained weights (tests, smoke runs)

# Annotated images are drawn at this width (aspect kept), so the text is readable on any input.
DISPLAY_WIDTH = 640
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class Network:
    """One `keras.applications` network: how to build it, feed it, and find its weights."""

    name: str  # the params.yaml key, also the keras.applications module of preprocess_input
    constructor: str  # keras.applications.<constructor>(weights=...)
    input_size: int  # square input, pixels
    url_folder: str  # folder of the weights file under KERAS_APPLICATIONS_URL
    weights_md5: str  # the file_hash Keras checks after a download

    @property
    def weights_file(self) -> str:
        """The file name Keras caches the ImageNet weights (with the classifier) under."""
        return f"{self.name}_weights_tf_dim_ordering_tf_kernels.h5"

    @property
    def weights_url(self) -> str:
        return f"{KERAS_APPLICATIONS_URL}/{self.url_folder}/{self.weights_file}"

    def build(self, weights: Path | None) -> keras.Model:
        """The network with the weights in `weights`, or randomly initialised for None."""
        import keras

        make = getattr(keras.applications, self.constructor)
        return make(weights=None if weights is None else str(weights))

    def preprocess(self, batch: np.ndarray) -> np.ndarray:
        """This network's own `keras.applications.<module>.preprocess_input` (RGB in)."""
        import keras

        module = getattr(keras.applications, self.name)
        return module.preprocess_input(batch)


NETWORKS: dict[str, Network] = {
    n.name: n
    for n in (
        Network("vgg16", "VGG16", 224, "vgg16", "64373286793e3c8b2b4e3219cbf3544b"),
        Network("vgg19", "VGG19", 224, "vgg19", "cbe5617147190e668d6c5d5026f83318"),
        Network("resnet50", "ResNet50", 224, "resnet", "2cb95161c43110f7111970584f804107"),
        Network(
            "inception_v3", "InceptionV3", 299, "inception_v3", "9a0d58056eeedaa3f26cb7ebd46da564"
        ),
        Network("xception", "Xception", 299, "xception", "0a58e3b7378bc2990ea3b43d5981f1f6"),
    )
}


class MissingFilesError(FileNotFoundError):
    """Weights or the class index are not on this machine, and the stage does not download."""


@dataclass(frozen=True)
class Located:
    """Where a needed file was found; `path` None means random weights."""

    path: Path | None
    origin: str  # "file" (named in params), "weights_dir", "keras-cache" or "random"


def keras_cache_dir() -> Path:
    """Keras' download cache, resolved as Keras resolves it, without importing Keras."""
    if "KERAS_HOME" in os.environ:
        home = Path(os.environ["KERAS_HOME"])
    else:
        base = Path.home()
        home = (base if os.access(base, os.W_OK) else Path("/tmp")) / ".keras"
    return home.expanduser() / "models"


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def locate_files(settings: ImageNet, cache: Path | None = None) -> tuple[dict[str, Located], Path]:
    """Find every weights file and the class index before any work starts.

    Order: the path named in params, then `weights_dir`, then Keras' cache. A file found under
    Keras' own name is checked against Keras' md5 (a cut-off download fails here, not halfway);
    a file named in params is taken as it is (it may hold fine-tuned weights).
    Raises MissingFilesError listing everything that is missing.
    """
    cache = cache or keras_cache_dir()
    folders = [Path(settings.weights_dir)] if settings.weights_dir else []
    folders.append(cache)
    problems: list[str] = []
    weights: dict[str, Located] = {}
    for name in settings.models:
        network = NETWORKS[name]
        found = _locate(
            settings.weights.get(name),
            f"imagenet.weights.{name}",
            folders,
            cache,
            network.weights_file,
            network.weights_md5,
            f"{network.weights_file} from {network.weights_url} "
            f"(or set imagenet.weights.{name}: /path/to/file)",
        )
        if isinstance(found, str):
            problems.append(f"{name}: {found}")
        else:
            weights[name] = found
    labels = _locate(
        settings.labels,
        "imagenet.labels",
        folders,
        cache,
        CLASS_INDEX_FILE,
        CLASS_INDEX_MD5,
        f"{CLASS_INDEX_FILE} from {CLASS_INDEX_URL} (or set imagenet.labels: /path/to/file)",
    )
    if isinstance(labels, str):
        problems.append(f"ImageNet labels: {labels}")
    elif labels.path is None:
        problems.append(f"ImageNet labels: imagenet.labels: {RANDOM!r} is for weights only")
    if problems:
        raise MissingFilesError(
            "imagenet: files this stage needs are missing or damaged, and it never downloads; "
            f"nothing was run. Looked in {', '.join(f'{f}/' for f in folders)} (Keras' cache is "
            f"{cache}/: ~/.keras/models/ unless KERAS_HOME is set). Put each file there, or name "
            "it in params.yaml:\n  - "
            + "\n  - ".join(problems)
            + "\nOr set imagenet.enabled: false to skip the stage (docs/imagenet.md)."
        )
    return weights, labels.path


def _locate(
    named: str | None,
    param: str,
    folders: list[Path],
    cache: Path,
    file_name: str,
    md5: str,
    missing: str,
) -> Located | str:
    """One file: the path named in params if any (it must exist), else Keras' file name in
    the folders. Returns where it is, or what is wrong with it."""
    if named == RANDOM:
        return Located(None, RANDOM)
    if named is not None:
        path = Path(named).expanduser()
        return Located(path, "file") if path.is_file() else f"{param}: {path} is not a file"
    for folder in folders:
        path = folder / file_name
        if path.is_file():
            actual = md5sum(path)
            if actual != md5:
                return (
                    f"{path}: md5 {actual}, but Keras' {file_name} has md5 {md5} "
                    "(a cut-off download?); fetch it again"
                )
            return Located(path, "keras-cache" if folder == cache else "weights_dir")
    return missing


def load_class_index(path: Path) -> list[str]:
    """The 1000 human-readable ImageNet labels from Keras' `imagenet_class_index.json`
    ({"0": ["n01440764", "tench"], ...}), in class order."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable class-index JSON: {exc}") from None
    expected = {str(i) for i in range(NUM_CLASSES)}
    if not isinstance(data, dict) or set(data) != expected:
        raise ConfigError(
            f"{path}: expected a JSON object with keys '0'..'{NUM_CLASSES - 1}' "
            '(like {"0": ["n01440764", "tench"], ...})'
        )
    labels = []
    for i in range(NUM_CLASSES):
        entry = data[str(i)]
        if not (
            isinstance(entry, list) and len(entry) == 2 and all(isinstance(s, str) for s in entry)
        ):
            raise ConfigError(f"{path}: entry {i!r}: expected [wordnet_id, label], got {entry!r}")
        labels.append(entry[1])
    return labels


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float


class ImageNetClassifier:
    """One pre-trained network and its labels: a BGR image in, the top-k predictions out."""

    def __init__(self, network: Network, model: keras.Model, labels: list[str]) -> None:
        classes = model.output_shape[-1]
        if classes != len(labels):
            raise ConfigError(
                f"{network.name}: the network predicts {classes} classes, the class index has "
                f"{len(labels)} labels"
            )
        self.network, self.model, self.labels = network, model, labels

    @classmethod
    def load(cls, network: Network, weights: Path | None, labels: list[str]) -> ImageNetClassifier:
        try:
            model = network.build(weights)
        except (OSError, ValueError) as exc:
            # h5py raises OSError for a damaged file, Keras ValueError for other weights.
            raise ConfigError(
                f"{network.name}: cannot load weights from {weights}: {exc}"
            ) from None
        return cls(network, model, labels)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """BGR uint8 image -> the network's input batch of one: resized (ignoring the aspect
        ratio, as the book's `load_img(target_size=...)` does), RGB, preprocessed."""
        size = self.network.input_size
        resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB).astype("float32")
        return self.network.preprocess(rgb[np.newaxis])

    def classify(self, image: np.ndarray, top: int = 5) -> list[Prediction]:
        """The `top` most probable labels, most probable first."""
        probabilities = np.asarray(self.model.predict_on_batch(self.prepare(image)))[0]
        best = np.argsort(probabilities)[::-1][:top]
        return [Prediction(self.labels[i], float(probabilities[i])) for i in best]


def draw_predictions(image: np.ndarray, predictions: list[Prediction], title: str) -> np.ndarray:
    """A copy of the image, DISPLAY_WIDTH wide, with the title and ranked predictions drawn
    on a dark band at the top left (the book draws the top-1 label in the same place)."""
    height, width = image.shape[:2]
    new_height = max(1, round(height * DISPLAY_WIDTH / width))
    interpolation = cv2.INTER_AREA if width > DISPLAY_WIDTH else cv2.INTER_CUBIC
    canvas = cv2.resize(image, (DISPLAY_WIDTH, new_height), interpolation=interpolation)
    lines = [title] + [
        f"{rank}. {p.label}: {p.probability:.2%}" for rank, p in enumerate(predictions, 1)
    ]
    scale, thickness, line_height, margin = 0.6, 1, 24, 8
    text_width = max(cv2.getTextSize(line, FONT, scale, thickness)[0][0] for line in lines)
    band = canvas.copy()
    cv2.rectangle(
        band, (0, 0), (text_width + 2 * margin, line_height * len(lines) + margin), (0, 0, 0), -1
    )
    canvas = cv2.addWeighted(band, 0.6, canvas, 0.4, 0)
    for i, line in enumerate(lines):
        color = (0, 255, 255) if i == 0 else (255, 255, 255)
        origin = (margin, line_height * (i + 1))
        cv2.putText(canvas, line, origin, FONT, scale, color, thickness, cv2.LINE_AA)
    return canvas


def image_files(folder: str | None) -> list[Path]:
    """The images to classify: every file directly in `folder` (hidden files and subfolders
    left out), or, for None, the two photos scikit-learn ships (china.jpg, flower.jpg), so
    the stage has real images without a download."""
    if folder is None:
        from sklearn.datasets import load_sample_images

        return [Path(name) for name in load_sample_images().filenames]
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"imagenet.images: {path} is not a folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ConfigError(f"imagenet.images: {path} holds no files")
    return files


def read_images(paths: list[Path]) -> tuple[dict[str, np.ndarray], list[Reject]]:
    """Decode every file (BGR); a file that is not an image is listed with why, never fatal."""
    decoder = ImageDecoder(channels=3, fast=False)
    images: dict[str, np.ndarray] = {}
    rejects: list[Reject] = []
    for path in paths:
        try:
            images[path.name] = decoder.decode(path.read_bytes())
        except (OSError, DecodeError) as exc:
            rejects.append(Reject(path.name, str(exc)))
            log.warning("%s: set aside: %s", path, exc)
    return images, rejects

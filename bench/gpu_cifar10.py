"""Train CIFAR-10 experiments of params.yaml with the project's own code and report JSON.

Book profile (40 epochs etc., whatever params.yaml says outside its `quick:` blocks), the
official 50,000/10,000 split, KERAS_BACKEND=jax by default. Meant for the GPU machine (see
bench/README.md), runs anywhere Keras does.

    python bench/gpu_cifar10.py --pack .gpu/data/cifar10-jpg-pack.npz \
        --run "minivggnet_cifar10 runner=keras spe=1" \
        --run "minivggnet_cifar10 runner=scan" --out results.jsonl

Each --run is an experiment id then optional key=value settings; every run goes through
dl4cv.training.fit.fit_keras, the train stage's path (the project's callbacks, BestCheckpoint and
ResumeCheckpoint writing to a temporary directory):
  runner=R       train.runner: keras (model.fit) | scan (dl4cv.training.jax_epochs: one jitted
                 lax.scan per epoch, KERAS_BACKEND=jax)      [keras]
  policy=P       train.dtype_policy: float32 | mixed_bfloat16 [params.yaml's value]
  ckpt=S         train.checkpoint_interval_s (0: save the resume state every epoch)
                                                             [params.yaml's value]
  spe=N          steps_per_execution (keras runner)          [params.yaml's value]
  epochs=N       override the book's epoch count (timing runs)
  batch=N        override the batch size
  limit=N        train on a seeded random N of the training images (smoke tests)

Per run it prints one JSON line and appends it to --out: test accuracy and weighted precision
(dl4cv.evaluation.classification_metrics on the 10,000 test images, predicted as the evaluate
stage does), final val_accuracy, first-epoch seconds, seconds per epoch excluding the first,
wall seconds per epoch (with checkpoint saving) and the whole history.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
ROOT = Path(__file__).resolve().parents[1]
# DL4CV_SRC: run another copy of src/ (e.g. a `git archive HEAD src` snapshot, so that edits in
# progress in the working tree cannot change a run on the device); default: this tree's src/.
SRC = Path(os.environ.get("DL4CV_SRC", ROOT / "src")).resolve()
sys.path.insert(0, str(SRC))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from dl4cv.config import Params, SplitSpec, parse_params  # noqa: E402
from dl4cv.data.formats import ProcessedDataset  # noqa: E402
from dl4cv.data.loaders import Entry, Layout, SimpleDatasetLoader, layout_entries  # noqa: E402
from dl4cv.data.splits import make_split  # noqa: E402
from dl4cv.preprocessing import (  # noqa: E402
    ImageDecoder,
    ImageToArrayPreprocessor,
    SimplePreprocessor,
)

SPLITS = {"train": "train", "test": "test"}  # the mirror's layout: {train,test}/<class>/<n>.jpg


class PackSource:
    """The project's ImageSource protocol over bench/pack_cifar10_jpg.py's pack: yields the
    mirror's JPEG files byte for byte, so the project's loader decodes exactly what the
    preprocess stage decodes from the zip."""

    def __init__(self, path: Path) -> None:
        with np.load(path) as npz:
            self.header = npz["header"].tobytes()
            self.scans = npz["scans"]
            self.offsets = npz["offsets"]
            names = npz["names"].tolist()
        self.index = {name: i for i, name in enumerate(names)}

    def layout(self) -> Layout:
        return layout_entries(list(self.index), None, SPLITS, None)

    def read(self, entry: Entry) -> bytes:
        i = self.index[entry.name]
        return self.header + self.scans[self.offsets[i] : self.offsets[i + 1]].tobytes()


def load_dataset(params: Params, pack: Path | None, processed: Path | None) -> ProcessedDataset:
    """CIFAR-10 as dl4cv.data.formats produces it (uint8 BGR, sorted class names)."""
    if processed is not None:
        return ProcessedDataset.load(processed)
    image, options = params.dataset("cifar10").image, params.preprocess
    loader = SimpleDatasetLoader(  # the same decoder and preprocessors as _read_image_zip
        ImageDecoder(image.channels, (image.width, image.height), options.fast_decode),
        [
            SimplePreprocessor(image.width, image.height, options.interpolation),
            ImageToArrayPreprocessor(),
        ],
        workers=options.workers,
    )
    loaded = loader.load(PackSource(pack), progress=False)
    classes = sorted(set(loaded.labels))
    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index[label] for label in loaded.labels], dtype=np.int64)
    return ProcessedDataset(loaded.data, labels, classes, loaded.names, loaded.splits)


def book_params(path: Path) -> Params:
    raw = yaml.safe_load(path.read_text())
    raw["profile"] = "book"
    return parse_params(raw, source=str(path))


def parse_run(text: str) -> tuple[str, dict[str, str]]:
    exp_id, *pairs = text.split()
    settings = dict(pair.split("=", 1) for pair in pairs)
    unknown = set(settings) - {"runner", "spe", "epochs", "batch", "policy", "limit", "ckpt"}
    if unknown:
        raise SystemExit(f"--run {text!r}: unknown settings {sorted(unknown)}")
    return exp_id, settings


class WallClock:
    """Added last among the callbacks: epoch-end timestamps, so the interval between two
    includes every callback (checkpoint saving) and the progress line."""

    def __init__(self):
        import keras

        class _CB(keras.callbacks.Callback):
            def __init__(cb):
                super().__init__()
                cb.ends: list[float] = []

            def on_train_begin(cb, logs=None):
                cb.start = time.perf_counter()

            def on_epoch_end(cb, epoch, logs=None):
                cb.ends.append(time.perf_counter())

        self.callback = _CB()

    def per_epoch(self) -> list[float]:
        ends = [self.callback.start, *self.callback.ends]
        return [b - a for a, b in zip(ends, ends[1:], strict=False)]


DEADLINE = float("inf")  # time.perf_counter() after which trainings stop at an epoch's end


def run_one(exp_id: str, settings: dict, params: Params, data, x_test, y_test, classes) -> dict:
    import keras

    class Deadline(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if time.perf_counter() > DEADLINE:
                self.model.stop_training = True

    from dl4cv import evaluation
    from dl4cv.runtime import backend
    from dl4cv.training.fit import fit_keras
    from dl4cv.training.state import TrainingState

    exp = params.experiment(exp_id)
    train = exp.train
    runner = settings.get("runner", "keras")
    policy = settings.get("policy", train.dtype_policy)
    train = dataclasses.replace(
        train,
        steps_per_execution=int(settings.get("spe", train.steps_per_execution)),
        epochs=int(settings.get("epochs", train.epochs)),
        batch_size=int(settings.get("batch", train.batch_size)),
        runner=runner,
        dtype_policy=policy,
        checkpoint_interval_s=float(settings.get("ckpt", train.checkpoint_interval_s)),
    )
    exp = dataclasses.replace(exp, train=train)
    limit = int(settings["limit"]) if "limit" in settings else None
    if limit:  # a seeded random subset: the loader's order is sorted by class
        keep = np.sort(np.random.default_rng(params.seed).permutation(len(data.y_train))[:limit])
        data = dataclasses.replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep])

    backend.seed_everything(params.seed)
    started = time.perf_counter()
    clock = WallClock()
    with tempfile.TemporaryDirectory(prefix=f"{exp_id}-") as tmp:
        state = TrainingState("bench", train.epochs)
        model = fit_keras(
            exp, data, state, Path(tmp), [clock.callback, Deadline()], verbose=2, seed=params.seed
        )
    history = state.history
    wall = clock.per_epoch()
    fit_seconds = time.perf_counter() - started

    probs = model.predict(x_test.astype(np.float32) / 255.0, batch_size=1024, verbose=0)
    y_pred = np.asarray(probs).argmax(axis=1)
    metrics = evaluation.classification_metrics(y_test, y_pred, classes)
    epoch_s = history.get("epoch_seconds", [])
    result = {
        "experiment": exp_id,
        "runner": runner,
        "policy": policy,
        "epochs": len(history.get("loss", [])),
        "stopped_early": len(history.get("loss", [])) < train.epochs,
        "batch_size": train.batch_size,
        "steps_per_execution": train.steps_per_execution if runner == "keras" else None,
        "checkpoint_interval_s": train.checkpoint_interval_s,
        "train_images": int(len(data.x_train)),
        "test_images": int(len(y_test)),
        "accuracy": metrics["accuracy"],
        "precision_weighted": metrics["precision_weighted"],
        "recall_weighted": metrics["recall_weighted"],
        "f1_weighted": metrics["f1_weighted"],
        "final_val_accuracy": (history.get("val_accuracy") or [None])[-1],
        "final_val_loss": (history.get("val_loss") or [None])[-1],
        "first_epoch_seconds": epoch_s[0] if epoch_s else None,
        "seconds_per_epoch": float(np.mean(epoch_s[1:])) if len(epoch_s) > 1 else None,
        "wall_seconds_per_epoch": float(np.mean(wall[1:])) if len(wall) > 1 else None,
        "fit_seconds": fit_seconds,
        "history": history,
    }
    return result


def environment() -> dict:
    import keras

    info = {
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "python": platform.python_version(),
        "dl4cv_src": str(SRC),
        "dl4cv_commit": (SRC.parent / "COMMIT").read_text().strip()
        if (SRC.parent / "COMMIT").exists()
        else None,
    }
    if info["backend"] == "jax":
        import jax

        info["jax"] = jax.__version__
        info["devices"] = [f"{d.platform}:{d.device_kind}" for d in jax.devices()]
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--pack", type=Path, help="bench/pack_cifar10_jpg.py output")
    src.add_argument("--processed", type=Path, help="data/processed/cifar10.npz")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--run", action="append", required=True, help="see the module doc")
    parser.add_argument("--out", type=Path, help="append one JSON line per run")
    parser.add_argument(
        "--deadline",
        type=float,
        help="seconds from start after which trainings stop at the next epoch end and "
        "remaining runs are skipped (to finish inside a device call's time limit)",
    )
    args = parser.parse_args(argv)
    global DEADLINE
    if args.deadline:
        DEADLINE = time.perf_counter() + args.deadline

    runs = [parse_run(r) for r in args.run]
    params = book_params(args.params)
    started = time.perf_counter()
    processed = load_dataset(params, args.pack, args.processed)
    split = make_split(processed.labels, processed.origin, SplitSpec("official"))
    from dl4cv.training.inputs import arrays_for  # noqa: E402

    data = arrays_for(processed, split)
    x_test, y_test = processed.images[split.test], processed.labels[split.test]
    env = environment()
    print(
        json.dumps(
            {
                "env": env,
                "data_seconds": round(time.perf_counter() - started, 1),
                "train": len(split.train),
                "test": len(split.test),
                "classes": processed.classes,
                "images_sum": int(processed.images.sum(dtype=np.int64)),
            }
        ),
        flush=True,
    )
    failed = 0
    for exp_id, settings in runs:
        if time.perf_counter() > DEADLINE:
            print(f"== {exp_id} {settings}: SKIPPED (deadline)", flush=True)
            failed += 1
            continue
        print(f"== {exp_id} {settings}", flush=True)
        try:
            result = run_one(exp_id, settings, params, data, x_test, y_test, processed.classes)
        except Exception:  # keep going: one broken variant must not cost the others
            traceback.print_exc()
            failed += 1
            continue
        result["env"] = env
        summary = {k: v for k, v in result.items() if k not in ("history", "env")}
        print("RESULT " + json.dumps(summary), flush=True)
        if args.out:
            with args.out.open("a") as fh:
                fh.write(json.dumps(result) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

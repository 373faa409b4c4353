"""SMILES / LeNet with the book's settings, class weights on and off, over several seeds.

Asks whether `class_weight: balanced` explains the gap to the book's 0.93 (ch 22). Runs the
train stage's `fit_keras` on the preprocess and split stages' outputs; one JSON line per run.
On the GPU machine (see bench/README.md for carrying keras):

    KERAS_BACKEND=jax python3 \
        bench/results/smiles-h100-2026-11-25/smiles_class_weight.py $OUT/ablation.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "src"))

from dl4cv import evaluation  # noqa: E402
from dl4cv.config import load_params  # noqa: E402
from dl4cv.data.formats import ProcessedDataset  # noqa: E402
from dl4cv.data.splits import Split  # noqa: E402
from dl4cv.runtime import backend  # noqa: E402
from dl4cv.runtime.fileio import read_json  # noqa: E402
from dl4cv.runtime.paths import processed_file, split_file  # noqa: E402
from dl4cv.training.fit import fit_keras  # noqa: E402
from dl4cv.training.inputs import arrays_for, scale_pixels  # noqa: E402
from dl4cv.training.state import TrainingState  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="JSON lines file to append to")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3])
    args = parser.parse_args()
    book = load_params("params.yaml").experiment("smile_detection")
    processed = ProcessedDataset.load(processed_file(book.dataset))
    split = Split.from_json(read_json(split_file(book.dataset)))
    data = arrays_for(processed, split)
    x_test, y_test = scale_pixels(processed.images[split.test]), processed.labels[split.test]
    with open(args.out, "a") as out:
        for seed in args.seeds:
            for weights in ("balanced", "none"):
                exp = dataclasses.replace(
                    book, train=dataclasses.replace(book.train, class_weight=weights)
                )
                backend.seed_everything(seed)
                started = time.perf_counter()
                with tempfile.TemporaryDirectory() as tmp:
                    state = TrainingState("bench", exp.train.epochs)
                    model = fit_keras(exp, data, state, Path(tmp), [], verbose=0, seed=seed)
                probs = model.predict(x_test, batch_size=1024, verbose=0)
                metrics = evaluation.classification_metrics(
                    y_test, np.asarray(probs).argmax(axis=1), processed.classes
                )
                row = {
                    "seed": seed,
                    "class_weight": weights,
                    "accuracy": metrics["accuracy"],
                    "precision_weighted": metrics["precision_weighted"],
                    "f1": {k: v["f1"] for k, v in metrics["per_class"].items()},
                    "val_accuracy": state.history["val_accuracy"],
                    "epoch_seconds": state.history["epoch_seconds"],
                    "fit_seconds": time.perf_counter() - started,
                }
                print(json.dumps({k: row[k] for k in ("seed", "class_weight", "accuracy")}))
                out.write(json.dumps(row) + "\n")
                out.flush()


if __name__ == "__main__":
    main()

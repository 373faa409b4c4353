"""Does the scan runner train an experiment as `model.fit` does? One experiment, both runners,
several seeds, book profile, on this machine (issue 9: shallownet_animals ended 5 points below
its CPU figure on the GPU, one seed each).

Run from a repository whose data stages have run (data/processed/<dataset>.npz), once per
backend, since the scan runner needs JAX:

    KERAS_BACKEND=tensorflow python \
        bench/results/runner-parity-2026-12-02/runner_parity.py shallownet_animals keras 42 43
    KERAS_BACKEND=jax python \
        bench/results/runner-parity-2026-12-02/runner_parity.py shallownet_animals scan 42 43

Prints one JSON line per seed: test accuracy, final val accuracy, seconds.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dl4cv.config import load_params
from dl4cv.data.formats import ProcessedDataset
from dl4cv.data.splits import make_split
from dl4cv.runtime import backend
from dl4cv.runtime.paths import processed_file
from dl4cv.training.fit import fit_keras
from dl4cv.training.inputs import arrays_for
from dl4cv.training.state import resumable_state


def main(exp_id: str, runner: str, seeds: list[int]) -> None:
    params = load_params()
    exp = params.experiment(exp_id)
    exp = dataclasses.replace(exp, train=dataclasses.replace(exp.train, runner=runner))
    spec = params.dataset(exp.dataset)
    processed = ProcessedDataset.load(processed_file(exp.dataset))
    split = make_split(processed.labels, processed.origin, spec.split, spec.subset)
    arrays = arrays_for(processed, split)
    for seed in seeds:
        backend.seed_everything(seed)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            state = resumable_state(Path(tmp), "f" * 64, exp.train.epochs)
            model = fit_keras(exp, arrays, state, Path(tmp), verbose=0, seed=seed)
            predicted = model.predict(arrays.x_val, batch_size=1000, verbose=0).argmax(axis=1)
        print(
            json.dumps(
                {
                    "experiment": exp_id,
                    "runner": runner,
                    "backend": backend.name(),
                    "seed": seed,
                    "test_accuracy": float(np.mean(predicted == arrays.y_val)),
                    "final_val_accuracy": state.history["val_accuracy"][-1],
                    "seconds": round(time.perf_counter() - started, 1),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3:]])

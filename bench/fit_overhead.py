"""Pipeline overhead: `python stages/train.py <exp>` against a bare `model.fit` script.

Both run as fresh processes on the same processed data, split, model and epochs (the current
profile of params.yaml), so both pay the same imports; the difference is what the pipeline
adds: validation of params, seeding, MLflow tracking, per-epoch checkpoints and resume state.

    python bench/fit_overhead.py shallownet_animals
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

BARE = """
import json, sys, numpy as np, keras
from dl4cv.config import load_params
from dl4cv.data.formats import ProcessedDataset
from dl4cv.data.splits import Split
from dl4cv.runtime.paths import processed_file, split_file
from dl4cv.training.fit import build_model
from dl4cv.training.inputs import arrays_for
from dl4cv.training.optimizers import build_optimizer
exp = load_params().experiment(sys.argv[1])
data = ProcessedDataset.load(processed_file(exp.dataset))
split = Split.from_json(json.load(open(split_file(exp.dataset))))
arrays = arrays_for(data, split)
model = build_model(exp.model, arrays.x_train.shape[1:], len(arrays.classes))
model.compile(optimizer=build_optimizer(exp.optimizer), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
model.fit(arrays.x_train, arrays.y_train, validation_data=(arrays.x_val, arrays.y_val),
          batch_size=exp.train.batch_size, epochs=exp.train.epochs, verbose=2)
"""


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("experiment")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    bare = min(timed([sys.executable, "-c", BARE, args.experiment]) for _ in range(args.repeat))
    stage = min(
        timed([sys.executable, "stages/train.py", args.experiment]) for _ in range(args.repeat)
    )
    print(
        json.dumps(
            {
                "experiment": args.experiment,
                "bare_fit_seconds": bare,
                "train_stage_seconds": stage,
                "overhead": stage / bare - 1,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

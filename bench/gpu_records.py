"""Turn bench/gpu_cifar10.py results into experiment records the `report` stage reads.

The GPU machine runs the project's training code (`fit_keras`) but not DVC or MLflow, so its
CIFAR-10 runs leave JSON lines, not `reports/experiments/<id>/`. This writes, for each
experiment, the full-length run with the experiment's declared runner (keras, float32,
steps_per_execution 1) as a record: `metrics.json` with the evaluate stage's headline keys,
`history.csv` and `curves.png`. Each record says where it came from (`source`, `device`) and has
no MLflow run (`mlflow_run_id: null`): `reports/book.md` shows these rows apart, as `not comparable
(outside the pipeline)`, and they are no DVC metric nor a seed of the spread.

    python bench/gpu_records.py bench/results/*/results*.jsonl --into reports/experiments
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dl4cv import evaluation
from dl4cv.runtime.fileio import write_json


def best_runs(files: list[Path]) -> dict[str, dict]:
    """Per experiment, the last full-length keras/float32/spe-1 run among the files."""
    chosen: dict[str, dict] = {}
    for path in files:
        for line in path.read_text().splitlines():
            run = json.loads(line)
            declared = (
                run["runner"] == "keras"
                and run.get("policy") == "float32"
                and run.get("steps_per_execution") == 1
                and not run.get("stopped_early")
                and "limit" not in run
            )
            if declared:
                run["results_file"] = str(path)
                chosen[run["experiment"]] = run
    return chosen


def record(run: dict) -> dict:
    history = run["history"]
    val_loss = np.array(history["val_loss"])
    best = int(val_loss.argmin())
    improvements = sum(1 for i, v in enumerate(val_loss) if v <= val_loss[: i + 1].min())
    metrics = {
        "experiment": run["experiment"],
        "profile": "book",
        "source": f"bench/gpu_cifar10.py ({run['results_file']})",
        "device": ", ".join(run["env"].get("devices", [])),
        "backend": run["env"]["backend"],
        "mlflow_run_id": None,
        "epochs": run["epochs"],
        "accuracy": run["accuracy"],
        "precision_weighted": run["precision_weighted"],
        "recall_weighted": run["recall_weighted"],
        "f1_weighted": run["f1_weighted"],
        "final_val_accuracy": run["final_val_accuracy"],
        "final_val_loss": run["final_val_loss"],
        "best_val_loss": float(val_loss[best]),
        "best_val_loss_epoch": best + 1,
        "best_val_loss_accuracy": history["val_accuracy"][best],
        "first_epoch_seconds": run["first_epoch_seconds"],
        "seconds_per_epoch": run["seconds_per_epoch"],
        "train_seconds": run["fit_seconds"],
    }
    if run["experiment"] == "checkpoint_improvements":
        metrics["improvement_checkpoints"] = improvements
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--into", type=Path, required=True)
    args = parser.parse_args()
    for exp_id, run in best_runs(args.results).items():
        out = args.into / exp_id
        write_json(out / "metrics.json", record(run))
        evaluation.history_csv(out / "history.csv", run["history"])
        evaluation.plot_curves(out / "curves.png", run["history"], f"{exp_id} (H100, bench)")
        print(f"{exp_id}: {out}")


if __name__ == "__main__":
    main()

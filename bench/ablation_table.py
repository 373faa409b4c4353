"""The ablations' records against the workspace's own run, read from the MLflow store.

    python bench/ablation_table.py [bench/ablations.txt] > ablations.md

For each ablation of the file (a DVC experiment, bench/gpu_book.sh ABLATIONS=1), the newest run
of its experiment tagged with its name (`dvc.exp_name`), and the newest pipeline run of the same
experiment and seed from the workspace (no experiment name): what changed, and by how much.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mlflow import MlflowClient

from dl4cv import tracking
from dl4cv.seeds.runs import record_of

KEYS = ("accuracy", "precision_weighted", "best_val_loss", "best_val_loss_accuracy")


def ablations(path: Path) -> list[tuple[str, str, list[str]]]:
    """(name, experiment, params) per line of the file."""
    rows = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, target, *sets = line.split()
            rows.append((name, target.split("@", 1)[1], sets))
    return rows


def newest(client: MlflowClient, experiment_id: str, exp: str, exp_name: str | None) -> dict:
    """The record of the newest run of `exp` in DVC experiment `exp_name` (None: workspace)."""
    query = f"tags.`dl4cv.experiment` = '{exp}' AND tags.`dl4cv.source` = 'pipeline'"
    if exp_name:
        query += f" AND tags.`dvc.exp_name` = '{exp_name}'"
    for run in client.search_runs([experiment_id], query, order_by=["attributes.start_time DESC"]):
        if exp_name is None and "dvc.exp_name" in run.data.tags:
            continue
        record = record_of(client, run.info.run_id)
        if record is not None:
            return record | {"seed": run.data.tags.get("dl4cv.seed", "")}
    return {}


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "bench/ablations.txt")
    client = MlflowClient(tracking.tracking_uri())
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT_NAME)
    if experiment is None:
        print(
            f"error: no MLflow experiment {tracking.EXPERIMENT_NAME!r} in {tracking.tracking_uri()}"
        )
        return 1
    print("| ablation | experiment | changed | metric | workspace (seed) | ablation | diff |")
    print("|---|---|---|---|---|---|---|")
    for name, exp, sets in ablations(path):
        base = newest(client, experiment.experiment_id, exp, None)
        found = newest(client, experiment.experiment_id, exp, name)
        changed = "<br>".join(s.split(".", 2)[-1] for s in sets)
        if not found:
            print(f"| {name} | {exp} | {changed} | no record | | | |")
            continue
        for key in KEYS:
            if isinstance(found.get(key), float) and isinstance(base.get(key), float):
                diff = found[key] - base[key]
                print(
                    f"| {name} | {exp} | {changed} | {key} | {base[key]:.4f} ({base['seed']}) "
                    f"| {found[key]:.4f} | {diff:+.4f} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Judge a finished seeds run again with today's rule, from what came back of it.

A GPU machine is handed back with its artifact store; what returns is reports/seeds.json (every
figure's value per seed, the runs' ids) and mlflow.db (the validation curves). This rebuilds the
seeds section from those with the current seed_report code, so a change of the rule does not
need the GPU again:

    python bench/results/seeds-h200-2026-12-02/rejudge_seeds.py RUN/seeds.json RUN/mlflow.db OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dl4cv.report import book as report_stage
from dl4cv.report import seeds as seed_report
from dl4cv.seeds.runs import CURVE, SeedRun, SeedRuns


def nested(dotted: str, value: float, into: dict) -> None:
    """`hinge.image_1` = v -> into["hinge"]["image_1"] = v (spread.lookup's inverse)."""
    *parents, leaf = dotted.split(".")
    for part in parents:
        into = into.setdefault(part, {})
    into[leaf] = value


def runs_of(seeds_json: dict, db: Path) -> SeedRuns:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{db.resolve()}")
    pipeline = {}
    for e in seeds_json["experiments"]:
        records: dict[str, dict] = {seed: {} for seed in e["seeds"]}
        for f in e["figures"]:
            for seed, value in zip(f["seeds"], f["values"], strict=True):
                nested(f["metric"], value, records[seed])
        pipeline[e["id"]] = [
            SeedRun(
                experiment=e["id"],
                seed=seed,
                run_id=run_id,
                source="pipeline",
                profile="book",
                record=records[seed],
                val_accuracy=[
                    m.value
                    for m in sorted(client.get_metric_history(run_id, CURVE), key=lambda m: m.step)
                ],
            )
            for seed, run_id in zip(e["seeds"], e["run_ids"], strict=True)
        ]
    outside = [SeedRun(**r) for r in seeds_json["outside_pipeline"]]
    return SeedRuns(pipeline, outside)


def main(argv: list[str]) -> int:
    seeds_json, db, out = Path(argv[0]), Path(argv[1]), Path(argv[2])
    runs = runs_of(json.loads(seeds_json.read_text()), db)
    section = seed_report.build(report_stage.load_figures("book/figures.yaml"), runs)
    for path in seed_report.write(section, out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

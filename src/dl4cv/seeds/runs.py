"""Every seed's runs, read from the MLflow store: the one place that holds all of them.

Each `dvc exp run` (one per seed) runs in its own workspace and sees only its own records;
every stage, though, logs into the repository's store (tracking.tracking_uri()) an MLflow run
tagged `dl4cv.experiment`, `dl4cv.seed`, `dl4cv.profile` and `dl4cv.source`, and the record it
wrote as the artifact `report/metrics.json`. Which runs count:

- `dl4cv.source = pipeline` (set by run_record for every stage) and `dl4cv.profile = book`;
  runs from elsewhere (a benchmark script, a notebook: no such tag, or another value) are
  returned apart, never counted;
- runs of the workspace (a plain `dvc repro`) and of the seeds command's experiments
  (`dvc.exp_name` seed-<s>); another DVC experiment (an ablation, `-S` some param) ran other
  params and never counts;
- per experiment, only the runs of the git commit of its newest run (a code fix since makes
  the older seeds another experiment), and per seed the newest run that has its record.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dl4cv import tracking
from dl4cv.tracking import run_record, store

RECORD_ARTIFACT = f"{run_record.REPORT}/metrics.json"
CURVE = "val_accuracy"
REPORT_RUN = "book-report"  # the report stage's own run: a summary, not an experiment
SEED_EXPERIMENT = re.compile(r"seed-\d+")  # the DVC experiments `python -m dl4cv.seeds` queues


@dataclass
class SeedRun:
    experiment: str
    seed: str
    run_id: str
    source: str  # the `dl4cv.source` tag; "" when the run has none
    profile: str
    record: dict = field(default_factory=dict)  # its metrics.json
    val_accuracy: list[float] = field(default_factory=list)  # per epoch


@dataclass
class SeedRuns:
    pipeline: dict[str, list[SeedRun]]  # experiment -> one run per seed, seeds in order
    outside: list[SeedRun]  # runs not from a pipeline stage: shown, never counted


def collect() -> SeedRuns:
    """The counted runs and the outside ones, from the store of tracking.tracking_uri()."""
    from mlflow import MlflowClient

    # A progress bar per record read (three per seed and experiment) would bury the log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    store.limit_http()
    client = MlflowClient(tracking.tracking_uri())
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT_NAME)
    if experiment is None:
        return SeedRuns({}, [])
    runs = _all_runs(client, experiment.experiment_id)
    counted: dict[str, list[Any]] = {}
    outside = []
    for run in runs:
        tags = run.data.tags
        name = tags.get("dl4cv.experiment")
        if name is None or name == REPORT_RUN:
            continue
        if tags.get(run_record.SOURCE_TAG) != run_record.PIPELINE:
            outside.append(_seed_run(run))
        elif tags.get("dl4cv.profile") == "book" and _committed_params(tags):
            counted.setdefault(name, []).append(run)
    return SeedRuns(
        {name: chosen for name, group in counted.items() if (chosen := _choose(client, group))},
        outside,
    )


def _committed_params(tags: dict[str, str]) -> bool:
    """A workspace run or a seed's experiment: the params of the commit, but for the seed."""
    exp_name = tags.get("dvc.exp_name")
    return exp_name is None or SEED_EXPERIMENT.fullmatch(exp_name) is not None


def _all_runs(client: Any, experiment_id: str) -> list[Any]:
    """Every active run, newest first."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], order_by=["attributes.start_time DESC"], page_token=token
        )
        runs += page
        token = page.token
        if not token:
            return runs


def _choose(client: Any, runs: Iterable[Any]) -> list[SeedRun]:
    """Of one experiment's runs (newest first): those of the newest run's commit, the newest
    per seed that has its record, in seed order."""
    runs = list(runs)
    commit = runs[0].data.tags.get("git_commit")
    chosen: dict[str, SeedRun] = {}
    for run in runs:
        seed = run.data.tags.get("dl4cv.seed", "")
        if run.data.tags.get("git_commit") != commit or seed in chosen:
            continue
        record = record_of(client, run.info.run_id)
        if record is None:
            continue  # still training, or stopped before it was evaluated
        chosen[seed] = _seed_run(run, record, _curve(client, run.info.run_id))
    return [chosen[s] for s in sorted(chosen, key=_seed_key)]


def _seed_key(seed: str) -> tuple[int, str]:
    return (int(seed), "") if seed.lstrip("-").isdigit() else (0, seed)


def _seed_run(run: Any, record: dict | None = None, curve: list[float] | None = None) -> SeedRun:
    tags = run.data.tags
    return SeedRun(
        experiment=tags.get("dl4cv.experiment", run.info.run_name or ""),
        seed=tags.get("dl4cv.seed", ""),
        run_id=run.info.run_id,
        source=tags.get(run_record.SOURCE_TAG, ""),
        profile=tags.get("dl4cv.profile", ""),
        record=record or {},
        val_accuracy=curve or [],
    )


def record_of(client: Any, run_id: str) -> dict | None:
    """The run's metrics.json artifact; None when it has none or it is not a JSON object."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, RECORD_ARTIFACT, tmp)
            data = json.loads(Path(path).read_text())
        except (MlflowException, OSError, ValueError):
            return None
    return data if isinstance(data, dict) else None


def _curve(client: Any, run_id: str) -> list[float]:
    """The run's validation accuracy, epoch by epoch (empty for a k-NN)."""
    history = sorted(client.get_metric_history(run_id, CURVE), key=lambda m: m.step)
    return [m.value for m in history]

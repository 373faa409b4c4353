"""Where each stage reads and writes: one place, so stages and dvc.yaml agree."""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
MODELS = Path("models")
REPORTS = Path("reports")
# Where `python -m dl4cv.mirror add` puts datasets that have no public URL (git-ignored).
MIRROR = Path("mirror")

# Written by train into model_dir, read by evaluate (which imports neither train nor Keras).
RUN_FILE = "run.json"  # the MLflow run id, epochs, timing
HISTORY_FILE = "history.json"  # the per-epoch metrics


def repo_root() -> Path:
    """The repository the stage runs for. `dvc exp run --temp/--queue` runs stages in a copy
    under `.dvc/tmp/exps/`, deleted afterwards (or left behind by a killed queue worker); what
    must outlive the copy (MLflow runs, a spare of the resume state) goes to the repository."""
    cwd = Path.cwd()
    parts = cwd.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd


def spare_resume_dir(exp_id: str, fingerprint: str) -> Path:
    """A copy of resume_dir kept in the repository while a training runs in DVC's temporary
    copy: a killed queue worker takes the copy with it, a rerun resumes from this one."""
    return repo_root() / ".cache" / "resume" / f"{exp_id}-{fingerprint[:16]}"


def raw_dir(dataset: str) -> Path:
    return DATA / "raw" / dataset


def processed_file(dataset: str) -> Path:
    return DATA / "processed" / f"{dataset}.npz"


def rejects_file(dataset: str) -> Path:
    return DATA / "processed" / f"{dataset}-rejects.csv"


def split_file(dataset: str) -> Path:
    return DATA / "splits" / f"{dataset}.json"


def model_dir(exp_id: str) -> Path:
    """The finished training: final model, best checkpoint, history, MLflow run id."""
    return MODELS / exp_id / "model"


def resume_dir(exp_id: str) -> Path:
    """The last completed epoch's full state; kept by DVC (persist) so a killed run resumes."""
    return MODELS / exp_id / "last"


def report_dir(exp_id: str) -> Path:
    """One experiment's record (metrics.json with its MLflow run id, report, plots). The
    `report` stage reads every folder under `reports/experiments/` into `reports/book.md`."""
    return REPORTS / "experiments" / exp_id


def monitor_dir(exp_id: str) -> Path:
    """The ch 17 TrainingMonitor's files, rewritten after every epoch while training runs (beside
    the resume state: both outlive a killed training)."""
    return MODELS / exp_id / "monitor"


def labels_file(dataset: str) -> Path:
    """Hand-made (or truth-file) labels of a dataset that needs annotating: the captcha digits."""
    return DATA / "labels" / f"{dataset}.csv"


def label_rejects_file(dataset: str) -> Path:
    """What the annotate stage could not turn into labelled crops, and why."""
    return DATA / "labels" / f"{dataset}-rejects.csv"


def demo_video(dataset: str) -> Path:
    """The ch 22 demo video built from a dataset's test faces (its truth CSV goes beside it)."""
    return DATA / "demo" / f"{dataset}.avi"

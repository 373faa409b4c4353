"""train: fit one experiment, with checkpoints and resume, tracked as an MLflow run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import joblib
import numpy as np

from dl4cv import nn, tracking, training
from dl4cv.config import Params
from dl4cv.data.formats import ProcessedDataset
from dl4cv.data.sources import read_descriptor, sha256sum
from dl4cv.data.splits import Split
from dl4cv.data.waiting import DataWaiting
from dl4cv.runtime import backend
from dl4cv.runtime.fileio import atomic_path, read_json, write_json
from dl4cv.runtime.paths import (
    HISTORY_FILE,
    RUN_FILE,
    model_dir,
    monitor_dir,
    processed_file,
    raw_dir,
    rejects_file,
    repo_root,
    resume_dir,
    spare_resume_dir,
    split_file,
)
from dl4cv.tracking import mlflow_model, run_record
from dl4cv.training.inputs import arrays_for, scale_pixels
from dl4cv.training.knn import fit_knn
from dl4cv.training.predictions import PREDICT_BATCH, PREDICTIONS_FILE, Predictions
from dl4cv.training.state import BEST_FILE, resumable_state, take_spare

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

FINAL_KERAS = "model.keras"
FINAL_KNN = "model.joblib"
COMPILE_CACHE = ".cache/jax"  # JAX's compiled programs, shared by reruns (git-ignored)
EXAMPLES = 5  # test images saved with the MLflow Model as its input example


def run(exp_id: str, params: Params) -> dict:
    """Write models/<experiment>/model/ (final model, best checkpoint, test-set predictions,
    history, run id; only run.json, saying so, while the dataset waits for its data)."""
    entered = time.perf_counter()
    exp = params.experiment(exp_id)
    dataset = exp.dataset
    try:
        processed = ProcessedDataset.load(processed_file(dataset))
        split = Split.from_json(read_json(split_file(dataset)))
        read_descriptor(raw_dir(dataset))  # raises DataWaiting while the download waits
    except DataWaiting as waiting:
        return _wait(exp_id, waiting)
    x_test, y_test = processed.images[split.test], processed.labels[split.test]
    if exp.is_keras:
        backend.load_keras()  # networks only; quietly
        from dl4cv.training.callbacks import MLflowMetrics
        from dl4cv.training.fit import IMPROVEMENTS_DIR, check_runner, fit_keras, resolve
        from dl4cv.training.monitor import TrainingMonitor

        exp = resolve(exp)  # runner/dtype `auto` made concrete for this machine
        check_runner(exp)  # before any run is opened: runner scan needs KERAS_BACKEND=jax
        backend.use_compile_cache(tracking.repo_root() / COMPILE_CACHE)
    backend.seed_everything(params.seed)

    out = model_dir(exp_id)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    resume_dir(exp_id).mkdir(parents=True, exist_ok=True)  # empty for k-NN
    fingerprint = _fingerprint(exp, params.seed, dataset)
    # In DVC's temporary copy (dvc exp run --queue/--temp) the resume state is kept in the
    # repository too: a killed queue worker's copy is gone, a rerun resumes from the spare.
    spare = spare_resume_dir(exp_id, fingerprint)
    state = None
    if exp.is_keras:
        state = resumable_state(resume_dir(exp_id), fingerprint, exp.train.epochs)
        if not state.completed and take_spare(
            spare, resume_dir(exp_id), fingerprint, exp.train.epochs
        ):
            state = resumable_state(resume_dir(exp_id), fingerprint, exp.train.epochs)
    if state is None or not state.completed:  # the monitor's files of another training go
        shutil.rmtree(monitor_dir(exp_id), ignore_errors=True)
    monitor_dir(exp_id).mkdir(parents=True, exist_ok=True)  # empty when unused
    rejects = rejects_file(dataset)
    n_rejects = max(0, len(rejects.read_text().splitlines()) - 1) if rejects.exists() else 0

    with run_record.record(
        "train",
        exp_id,
        params,
        dataset=dataset,
        run_id=state.run_id if state else None,
        record_key=state.record if state else None,
        tags={"keras_backend": backend.name()}
        | ({"runner": exp.train.runner, "dtype_policy": exp.train.dtype_policy} if state else {}),
    ) as active:
        tracking.log_params(  # a resumed run keeps its own
            tracking.flatten("", dataclasses.asdict(exp))
            | {
                "seed": params.seed,
                "profile": params.profile,
                "split.train": len(split.train),
                "split.val": len(split.val),
                "split.test": len(split.test),
            }
        )
        tracking.log_metrics({"rejected_images": n_rejects}, if_new=True)
        tracking.log_artifact(rejects, run_record.DATA, if_new=True)
        started = time.perf_counter()
        setup_seconds = started - entered  # data, backend (GPU) start, model, MLflow run
        if state is None:
            model = fit_knn(exp.model, processed.images[split.train], processed.labels[split.train])
            with atomic_path(out / FINAL_KNN, suffix=".joblib") as tmp:
                joblib.dump(model, tmp)
            history: dict[str, list[float]] = {}
            train_seconds = time.perf_counter() - started
            predictions = Predictions(
                y_test, processed.classes, model.predict(x_test.reshape(len(x_test), -1))
            )
        else:
            state.record = active.record  # what a resumed training reopens
            state.run_id = active.run_id  # None while the store cannot be reached
            resumed_from = state.completed
            callbacks = [MLflowMetrics()]
            if exp.train.training_monitor:
                callbacks.append(
                    TrainingMonitor(
                        monitor_dir(exp_id) / "curves.png",
                        monitor_dir(exp_id) / "history.json",
                        start_at=resumed_from,
                        title=f"{exp_id} (training monitor)",
                    )
                )
            model = fit_keras(
                exp,
                arrays_for(processed, split),
                state,
                resume_dir(exp_id),
                callbacks,
                seed=params.seed,
                spare=spare if repo_root() != Path.cwd() else None,
            )
            shutil.rmtree(spare, ignore_errors=True)  # trained: nothing left to resume
            fit_seconds = time.perf_counter() - started  # model build + epochs + callbacks
            with atomic_path(out / FINAL_KERAS, suffix=".keras") as tmp:
                model.save(tmp)
            if state.best_file:
                shutil.copyfile(resume_dir(exp_id) / state.best_file, out / BEST_FILE)
            predictions = _network_predictions(
                model,
                out / BEST_FILE if state.best_file else None,
                x_test,
                y_test,
                processed.classes,
            )
            improvements = resume_dir(exp_id) / IMPROVEMENTS_DIR
            if exp.train.checkpoint == "improvements" and improvements.is_dir():
                shutil.copytree(improvements, out / IMPROVEMENTS_DIR)
                # Listed, not uploaded: dozens of weight files would double the disk they take.
                files = sorted(p.name for p in improvements.glob("*.weights.h5"))
                tracking.log_metrics({"improvement_checkpoints": len(files)})
                tracking.log_text("\n".join(files), f"{run_record.CHECKPOINTS}/improvements.txt")
            for name in ("curves.png", "history.json"):
                tracking.log_artifact(monitor_dir(exp_id) / name, run_record.MONITOR)
            history = state.history
            train_seconds = float(sum(history.get("epoch_seconds", [])))
            if resumed_from:
                tracking.set_tags({"resumed_from_epoch": str(resumed_from)})
        timing = (
            _epoch_timing(history, resumed_from) | {"fit_seconds": fit_seconds} if state else {}
        )
        info = {
            "run_id": active.run_id,
            "record": active.record,
            "experiment": exp_id,
            "backend": backend.name(),
            **(
                {"runner": exp.train.runner, "dtype_policy": exp.train.dtype_policy}
                if state
                else {}
            ),
            "epochs": len(history.get("loss", [])),
            "train_seconds": train_seconds,
            **timing,
            "setup_seconds": setup_seconds,
            "wall_seconds": time.perf_counter() - started,
            "fingerprint": fingerprint,
        }
        predictions.save(out / PREDICTIONS_FILE)
        write_json(out / HISTORY_FILE, history)
        write_json(out / RUN_FILE, info)
        tracking.log_metrics({"train_seconds": train_seconds, **timing})
        tracking.log_artifact(out / BEST_FILE, run_record.CHECKPOINTS)
        # The final model, as an MLflow Model: examples are the first test images, as the model
        # takes them (k-NN: raw flattened pixels; networks: pixels scaled to [0, 1]).
        examples, outputs = x_test[:EXAMPLES], predictions.final[:EXAMPLES]
        if exp.is_keras:
            mlflow_model.log_keras(model, scale_pixels(examples), outputs)
        else:
            mlflow_model.log_knn(model, examples.reshape(len(examples), -1), outputs)
    log.info(
        "%s: trained in %.1f s (set up in %.1f s, %.1f s from training start to saved; "
        "MLflow run %s)",
        exp_id,
        train_seconds,
        setup_seconds,
        time.perf_counter() - started,
        info["run_id"],
    )
    return info


def _epoch_timing(history: dict[str, list[float]], first: int) -> dict[str, float]:
    """Seconds of the first epoch this process ran (compilation included) and the median of the
    others: their difference is what compiling cost, or what the compile cache saved."""
    seconds = history.get("epoch_seconds", [])[first:]
    if not seconds:
        return {}
    timing = {"first_epoch_seconds": float(seconds[0])}
    if len(seconds) > 1:
        timing["epoch_seconds_median"] = float(np.median(seconds[1:]))
    return timing


def _wait(exp_id: str, waiting: DataWaiting) -> dict:
    """The declared outputs of a training that waits for its data: run.json says so (evaluate
    reads it), the other folders are empty. No MLflow run: nothing was trained."""
    shutil.rmtree(model_dir(exp_id), ignore_errors=True)
    for folder in (model_dir(exp_id), resume_dir(exp_id), monitor_dir(exp_id)):
        folder.mkdir(parents=True, exist_ok=True)
    info = waiting.record(experiment=exp_id)
    write_json(model_dir(exp_id) / RUN_FILE, info)
    waiting.warn(exp_id)
    return info


def _network_predictions(
    model: keras.Model,
    best_file: Path | None,
    x_test: np.ndarray,
    y_test: np.ndarray,
    classes: list[str],
) -> Predictions:
    """Softmax outputs on the test images, scaled as in training, of the final model and of the
    best checkpoint: what evaluate scores, so that it never has to load Keras. The best weights
    are loaded into the same network (and the final ones put back): a second network would
    compile its predict function again, seconds on a GPU."""
    images = scale_pixels(x_test)

    def softmax() -> np.ndarray:
        return model.predict(images, batch_size=PREDICT_BATCH, verbose=0).astype(np.float32)

    final = softmax()
    best = None
    if best_file:
        final_weights = model.get_weights()
        model.load_weights(best_file)
        best = softmax()
        model.set_weights(final_weights)
    return Predictions(y_test, classes, final, best)


def _fingerprint(exp, seed: int, dataset: str) -> str:
    """What a saved training state must match to be resumed: params, input data, and the code
    that builds and trains the model (a killed run is not continued by edited code)."""
    payload = json.dumps(
        {
            "experiment": dataclasses.asdict(exp),
            "seed": seed,
            "code": _code_hash(),
            "processed": sha256sum(processed_file(dataset)),
            "split": sha256sum(split_file(dataset)),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _code_hash() -> str:
    digest = hashlib.sha256()
    for package in (nn, training):
        for path in sorted(Path(package.__file__).parent.rglob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()

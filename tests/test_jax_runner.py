"""The scan runner (dl4cv.training.jax_epochs) through fit_keras, the dtype policy, and the
checkpoint interval.

The scan runner needs KERAS_BACKEND=jax, and this process has Keras loaded on TensorFlow: its
training runs in a subprocess (JAX on CPU), which prints the results as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import pytest

from dl4cv.config import ConfigError
from dl4cv.training.checkpoints import ResumeCheckpoint
from dl4cv.training.fit import build_model, fit_keras
from dl4cv.training.state import STATE_FILE, TrainingState
from tests.conftest import REPO

pytest.importorskip("jax")

EPOCHS, KILLED_AFTER, SEED = 4, 2, 7

SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, sys
    from pathlib import Path

    import keras
    import numpy as np

    from dl4cv.runtime import backend
    from dl4cv.training.fit import build_model, fit_keras
    from dl4cv.training.jax_epochs import fit_scan
    from dl4cv.training.state import resumable_state
    from tests.test_checkpoints import tiny_arrays, tiny_experiment

    EPOCHS, KILLED_AFTER, SEED = {EPOCHS}, {KILLED_AFTER}, {SEED}
    root = Path(sys.argv[1])
    assert keras.backend.backend() == "jax"
    exp = tiny_experiment(EPOCHS)
    exp = dataclasses.replace(exp, train=dataclasses.replace(exp.train, runner="scan"))
    data = tiny_arrays(n_train=64, n_val=32)
    data.y_train, data.y_val = data.y_train.astype(np.int32), data.y_val.astype(np.int32)


    class Killed(Exception):
        pass


    class KillAfter(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == KILLED_AFTER:
                raise Killed(epoch)


    def train(name, kill=False):
        backend.seed_everything(SEED)
        directory = root / name
        state = resumable_state(directory, "f" * 64, EPOCHS)
        extra = [KillAfter()] if kill else []
        try:
            model = fit_keras(exp, data, state, directory, extra, verbose=0, seed=SEED)
        except Killed:
            saved = json.loads((directory / "state.json").read_text())["completed"]
            state = resumable_state(directory, "f" * 64, EPOCHS)
            assert state.completed == saved == KILLED_AFTER, (saved, state.completed)
            backend.seed_everything(SEED + 1)  # the resumed run must not depend on it
            model = fit_keras(exp, data, state, directory, verbose=0, seed=SEED)
        it = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        history = {{k: v for k, v in state.history.items() if k != "epoch_seconds"}}
        return {{"history": history, "iterations": it, "completed": state.completed}}


    class WeightSums(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.sums = []

        def on_epoch_end(self, epoch, logs=None):
            weights = [keras.ops.convert_to_numpy(w) for w in self.model.trainable_weights]
            self.sums.append(float(sum(np.abs(w).sum() for w in weights)))


    def step_decay_run():
        # Epoch 1 onwards trains with a rate ~0: the scan must pick up the rate set per epoch.
        backend.seed_everything(SEED)
        optimizer = dataclasses.replace(
            exp.optimizer, momentum=0.0, decay=0.0, step_factor=1e-9, step_every=2
        )
        decayed = dataclasses.replace(exp, optimizer=optimizer)
        decayed = dataclasses.replace(decayed, train=dataclasses.replace(exp.train, epochs=3))
        state = resumable_state(root / "decay", "d" * 64, 3)
        sums = WeightSums()
        fit_keras(decayed, data, state, root / "decay", [sums], verbose=0, seed=SEED)
        return {{"sums": sums.sums, "lr": state.history["lr"]}}


    def one_full_batch_step(runner, class_weight):
        # One step over all 64 samples: the order cannot matter, so the scan runner's
        # per-sample weights must move the weights exactly as fit's class_weight does.
        backend.seed_everything(SEED)
        model = build_model(exp.model, data.x_train.shape[1:], 2)
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
        if runner == "scan":
            fit_scan(model, data, batch_size=64, epochs=1, class_weight=class_weight)
        else:
            model.fit(data.x_train, data.y_train, batch_size=64, epochs=1, shuffle=False,
                      class_weight=class_weight, verbose=0)
        return np.concatenate([keras.ops.convert_to_numpy(w).ravel() for w in model.weights])


    weights = {{0: 1.0, 1: 4.0}}
    fitted = one_full_batch_step("fit", weights)
    out = {{
        "resumed": train("resumed", kill=True),
        "a": train("a"),
        "b": train("b"),
        "decay": step_decay_run(),
        "class_weight": {{
            "scan_vs_fit": float(np.abs(one_full_batch_step("scan", weights) - fitted).max()),
            "unweighted_vs_fit": float(np.abs(one_full_batch_step("scan", None) - fitted).max()),
        }},
    }}
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def scan_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("scan")
    script = root / "scan_runs.py"
    script.write_text(SCRIPT.format(EPOCHS=EPOCHS, KILLED_AFTER=KILLED_AFTER, SEED=SEED))
    env = os.environ | {
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")]),
    }
    proc = subprocess.run(
        [sys.executable, str(script), str(root)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    line = next(li for li in proc.stdout.splitlines() if li.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_scan_resume_ends_with_every_epoch(scan_runs):
    resumed = scan_runs["resumed"]
    assert resumed["completed"] == EPOCHS
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert len(resumed["history"][key]) == EPOCHS, key
    steps_per_epoch = 64 // 4  # tiny_experiment's batch size is 4
    assert resumed["iterations"] == steps_per_epoch * EPOCHS
    assert resumed["history"]["val_accuracy"][-1] > 0.75  # two classes: chance is 0.5


def test_scan_resume_matches_an_uninterrupted_run(scan_runs):
    """Weights, optimizer and each epoch's shuffle (from seed and epoch) survive the kill."""
    resumed, full = scan_runs["resumed"]["history"], scan_runs["a"]["history"]
    for key in full:
        assert resumed[key] == pytest.approx(full[key], rel=1e-5, abs=1e-6), key


def test_scan_is_deterministic_on_cpu(scan_runs):
    assert scan_runs["a"] == scan_runs["b"]


def test_scan_runner_trains_with_the_step_decayed_rate(scan_runs):
    """The ch 16 step decay sets the rate between epochs; the jitted epoch must use it."""
    decay = scan_runs["decay"]
    lr0 = decay["lr"][0]
    assert decay["lr"] == pytest.approx([lr0, lr0 * 1e-9, lr0 * 1e-9])
    first, second, third = decay["sums"]
    assert abs(second - first) < 1e-4 * abs(first)  # a rate of ~0 leaves the weights
    assert second == pytest.approx(third, rel=1e-6)


def test_scan_runner_weights_classes_as_fit_does(scan_runs):
    """Smile detection (ch 22) trains with class weights: one full-batch step of the scan
    runner lands on fit's weights, and ignoring the weights would not."""
    compared = scan_runs["class_weight"]
    assert compared["scan_vs_fit"] < 1e-5
    assert compared["unweighted_vs_fit"] > 1e-3


CACHE_SCRIPT = textwrap.dedent(
    """
    import dataclasses, sys
    from pathlib import Path

    import numpy as np

    from dl4cv.runtime import backend
    from dl4cv.training.fit import fit_keras
    from dl4cv.training.state import resumable_state
    from tests.test_checkpoints import tiny_arrays, tiny_experiment

    root = Path(sys.argv[1])
    backend.use_compile_cache(root / "cache")
    exp = tiny_experiment(2)
    exp = dataclasses.replace(exp, train=dataclasses.replace(exp.train, runner="scan"))
    data = tiny_arrays(n_train=64, n_val=32)
    data.y_train, data.y_val = data.y_train.astype(np.int32), data.y_val.astype(np.int32)
    directory = root / sys.argv[2]
    fit_keras(exp, data, resumable_state(directory, "f" * 64, 2), directory, verbose=0)
    """
)


def test_a_rerun_compiles_nothing_new(tmp_path: Path):
    """The second training of the same model in a new process finds every program it needs in
    the compile cache (a key that changed per process would add files)."""
    script = tmp_path / "cache_run.py"
    script.write_text(CACHE_SCRIPT)
    env = os.environ | {
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",  # CPU compiles of a toy are quick
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")]),
    }
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    listings = []
    for run in ("first", "second"):
        proc = subprocess.run(
            [sys.executable, str(script), str(tmp_path), run],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-5000:]
        listings.append(sorted(p.name for p in (tmp_path / "cache").iterdir()))
    assert len(listings[0]) >= 2  # the training epoch and the validation pass at least
    assert listings[1] == listings[0]


def test_scan_runner_needs_jax(tmp_path):
    from tests.test_checkpoints import tiny_arrays, tiny_experiment

    assert keras.backend.backend() != "jax"
    exp = tiny_experiment()
    exp = dataclasses.replace(exp, train=dataclasses.replace(exp.train, runner="scan"))
    state = TrainingState("f" * 64, exp.train.epochs)
    with pytest.raises(ConfigError, match=r"experiments\.tiny\.train\.runner.*KERAS_BACKEND=jax"):
        fit_keras(exp, tiny_arrays(), state, tmp_path / "last", verbose=0)
    assert not (tmp_path / "last").exists()  # nothing started


def test_dtype_policy_applies_to_the_model_only(tmp_path):
    from tests.test_checkpoints import tiny_arrays, tiny_experiment

    exp = tiny_experiment(epochs=1)
    exp = dataclasses.replace(
        exp, train=dataclasses.replace(exp.train, dtype_policy="mixed_bfloat16")
    )
    state = TrainingState("f" * 64, 1)
    model = fit_keras(exp, tiny_arrays(), state, tmp_path, verbose=0)
    assert keras.config.dtype_policy().name == "float32"
    assert {layer.dtype_policy.name for layer in model.layers} == {"mixed_bfloat16"}
    assert model.layers[0].kernel.dtype == "float32"  # weights stay float32
    # The resume checkpoint keeps the policy.
    loaded = keras.models.load_model(tmp_path / str(state.model_file))
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"mixed_bfloat16"}
    assert keras.config.dtype_policy().name == "float32"


class Clock:
    """A settable time source for ResumeCheckpoint."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def completed(directory: Path) -> int:
    path = directory / STATE_FILE
    return json.loads(path.read_text())["completed"] if path.exists() else 0


def interval_run(directory: Path, times: list[float], epochs: int) -> tuple[list[int], dict]:
    """Feed ResumeCheckpoint (10 s interval) epoch ends at `times`; the saved `completed`
    after each, then after train end."""
    model = build_model(tiny_model_spec(), (8, 8, 1), 2)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    state = TrainingState("f" * 64, epochs)
    clock = Clock()
    resume = ResumeCheckpoint(directory, state, min_interval_s=10.0, clock=clock)
    resume.set_model(model)
    resume.on_train_begin()
    saved = []
    for epoch, now in enumerate(times):
        clock.now = now
        resume.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1)})
        saved.append(completed(directory))
    resume.on_train_end()
    saved.append(completed(directory))
    return saved, state.history


def test_checkpoint_interval_saves_at_most_every_n_seconds_and_after_the_last_epoch(
    tmp_path: Path,
):
    saved, history = interval_run(tmp_path, [4.0, 8.0, 12.0, 15.0, 21.0, 23.0], epochs=6)
    # 12 s is >= 10 s after the start, 21 s is not 10 s after that save; the last epoch always.
    assert saved == [0, 0, 3, 3, 3, 6, 6]
    assert sorted(p.name for p in tmp_path.glob("*.keras")) == ["model-0006.keras"]
    assert history["loss"] == pytest.approx([1.0 / (e + 1) for e in range(6)])
    assert json.loads((tmp_path / STATE_FILE).read_text())["history"] == history


def test_checkpoint_interval_saves_a_training_stopped_early(tmp_path: Path):
    saved, _ = interval_run(tmp_path, [4.0, 8.0], epochs=6)  # stop_training after epoch 2
    assert saved == [0, 0, 2]
    assert sorted(p.name for p in tmp_path.glob("*.keras")) == ["model-0002.keras"]


def test_checkpoint_interval_zero_saves_every_epoch(tmp_path: Path):
    model = build_model(tiny_model_spec(), (8, 8, 1), 2)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    state = TrainingState("f" * 64, 3)
    resume = ResumeCheckpoint(tmp_path, state)  # default: every epoch, real clock
    resume.set_model(model)
    resume.on_train_begin()
    for epoch in range(3):
        resume.on_epoch_end(epoch, {"loss": 1.0})
        assert completed(tmp_path) == epoch + 1


def tiny_model_spec():
    from tests.test_checkpoints import tiny_experiment

    return tiny_experiment().model

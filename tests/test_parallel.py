"""`python -m dl4cv.parallel` (make repro JOBS=N): real DVC in temporary git repositories, a real
Dask local cluster of 2 workers, and a real `dask scheduler` with a `dask worker` started as
separate processes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dl4cv.runtime.gpus import share_by_default
from tests.dvc_repo import digits_params, make_repo, processes_in, run, stages_of

# A stage that writes its name and its inputs' text after SLEEP seconds; FAIL=<name> fails it.
STAGE = """\
import os, sys, time
name, ins = sys.argv[1], sys.argv[2:]
time.sleep(float(os.environ.get("SLEEP", "0")))
if os.environ.get("FAIL") == name:
    sys.exit(f"{name} broke on purpose")
open(f"{name}.txt", "w").write(name + ":" + ",".join(open(f"{i}.txt").read() for i in ins))
"""


def dag(root: Path, edges: dict[str, list[str]]) -> Path:
    """A git + DVC project whose stages are `edges` (stage -> the stages it reads)."""
    stages = {
        name: {
            "cmd": f"python stage.py {name} {' '.join(ins)}".strip(),
            "deps": ["stage.py", *(f"{i}.txt" for i in ins)],
            "outs": [f"{name}.txt"],
        }
        for name, ins in edges.items()
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "stage.py").write_text(STAGE)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    for args in (
        ["git", "init", "-q"],
        [sys.executable, "-m", "dvc", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "dag"],
    ):
        run(args, root, environment())
    return root


# Independent branches b and c on a shared upstream a, joined by d; e stands alone.
DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": []}


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return {**env, "DVC_NO_ANALYTICS": "1", **extra}


def parallel(root: Path, *args: str, timeout: float = 300, **env: str):
    return subprocess.run(
        [sys.executable, "-m", "dl4cv.parallel", *args],
        cwd=root,
        env=environment(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def lock_stages(root: Path) -> dict:
    return yaml.safe_load((root / "dvc.lock").read_text())["stages"]


def test_the_diamond_runs_in_dependency_order_and_locks_as_dvc_repro_does(tmp_path):
    serial, par = dag(tmp_path / "serial", DIAMOND), dag(tmp_path / "par", DIAMOND)
    run([sys.executable, "-m", "dvc", "repro"], serial, environment())
    done = parallel(par, "--jobs", "2", SLEEP="1")
    assert done.returncode == 0, done.stderr
    assert (par / "d.txt").read_text() == "d:b:a:,c:a:" == (serial / "d.txt").read_text()
    assert lock_stages(par) == lock_stages(serial)
    lines = done.stdout.splitlines()
    events = [m[1] + " " + m[2] for line in lines if (m := re.search(r" (start|done) +(\w)", line))]
    assert events.index("done a") < min(events.index("start b"), events.index("start c"))
    assert max(events.index("done b"), events.index("done c")) < events.index("start d")
    assert lines[-1].startswith("parallel: 5 stages done")
    # two at a time: b and c (or e) overlapped
    starts = [line.split()[2] for line in lines if " start " in line]
    assert len(starts) == 5 and all((par / "logs" / "repro" / f"{s}.log").exists() for s in starts)
    assert re.search(r"\[2 running", done.stdout), done.stdout


def test_an_up_to_date_stage_is_not_rerun(tmp_path):
    root = dag(tmp_path, DIAMOND)
    assert parallel(root, "-j", "2").returncode == 0
    again = parallel(root, "-j", "2")
    assert again.returncode == 0 and again.stdout.strip() == "parallel: all 5 stages up to date"
    before = {p.name: p.stat().st_mtime_ns for p in root.glob("*.txt")}
    (root / "b.txt").unlink()  # b must run again, and d after it (its input changed... or not)
    third = parallel(root, "-j", "2")
    assert third.returncode == 0, third.stderr
    ended = sorted(line.split()[2] for line in third.stdout.splitlines() if " done  " in line)
    assert ended == ["b", "d"]  # a, c, e are not even looked at
    assert "done  b (restored)" in third.stdout  # DVC's run cache had it
    assert "done  d (up to date)" in third.stdout  # d's input is the same again: DVC skips it
    after = {p.name: p.stat().st_mtime_ns for p in root.glob("*.txt")}
    assert {k: after[k] for k in ("a.txt", "c.txt", "e.txt", "d.txt")} == {
        k: before[k] for k in ("a.txt", "c.txt", "e.txt", "d.txt")
    }


def test_a_failed_stage_stops_its_dependents_and_no_one_else(tmp_path):
    root = dag(tmp_path, DIAMOND)
    done = parallel(root, "-j", "2", FAIL="b", SLEEP="0.5")
    assert done.returncode == 1
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("error: b failed") and "logs/repro/b.log" in errors[0]
    assert "b broke on purpose" in (root / "logs" / "repro" / "b.log").read_text()
    assert "not started d" in done.stdout
    assert sorted(p.name for p in root.glob("*.txt")) == ["a.txt", "c.txt", "e.txt"]
    assert sorted(lock_stages(root)) == ["a", "c", "e"]
    assert "Traceback" not in done.stdout + done.stderr


def test_many_at_once_wait_for_dvcs_lock_instead_of_failing(tmp_path):
    """DVC holds its repository lock a moment before and after each stage: eight stages that
    finish together must take turns for it, not fail with 'Unable to acquire lock'."""
    root = dag(tmp_path, {f"s{i}": [] for i in range(8)})
    done = parallel(root, "-j", "4")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(lock_stages(root)) == 8


def test_interrupted_run_stops_every_stage_and_dvc_repro_resumes(tmp_path):
    root = dag(tmp_path, DIAMOND)
    env = environment(SLEEP="30")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dl4cv.parallel", "-j", "2"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    for line in proc.stdout:  # wait until two stages run
        lines.append(line)
        if "[2 running" in line:
            break
    stopping = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.monotonic() - stopping < 30
    assert "interrupted: stopped" in err and "Traceback" not in err
    assert not processes_in(root), processes_in(root)  # no stage, no dvc left behind
    assert not list(root.glob("*.txt")) and not (root / "dvc.lock").exists()
    run([sys.executable, "-m", "dvc", "repro"], root, environment())
    assert (root / "d.txt").read_text() == "d:b:a:,c:a:"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--jobs", "0"], "error: --jobs (JOBS): expected a whole number of at least 1, got '0'"),
        (["--jobs", "abc"], "error: --jobs (JOBS): expected a whole number of at least 1"),
        (["--scheduler", "tcp://127.0.0.1:{port}"], "no Dask scheduler answers"),
        (["--scheduler", "not an address"], "error: --scheduler: expected an address like"),
        (["nosuch"], "error: nosuch: no such stage in dvc.yaml"),
    ],
)
def test_bad_input_is_one_line_and_exit_1_within_10_s(tmp_path, args, expected):
    root = dag(tmp_path, {"a": []})
    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    started = time.monotonic()
    done = parallel(root, *(a.format(port=port) for a in args), timeout=30)
    assert time.monotonic() - started < 10
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert expected in done.stderr
    assert not (root / "a.txt").exists() and not (root / "logs").exists()


@pytest.fixture
def dask_cluster(tmp_path):
    """`dask scheduler` and one `dask worker` of 2 threads, separate processes on 127.0.0.1."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).parent / "dask")
    env = environment()
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            env=env,
            stdout=(logs / "scheduler.log").open("w"),
            stderr=subprocess.STDOUT,
        )
    ]
    procs.append(
        subprocess.Popen(
            [dask, "worker", address, "--nthreads", "2", "--no-dashboard", "--name", "w1"],
            env=env,
            stdout=(logs / "worker.log").open("w"),
            stderr=subprocess.STDOUT,
        )
    )
    try:
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_a_running_scheduler_runs_the_stages_on_its_workers(tmp_path, dask_cluster):
    root = dag(tmp_path / "repo", DIAMOND)
    done = parallel(root, "--scheduler", dask_cluster, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"on {dask_cluster}" in done.stdout
    assert (root / "d.txt").read_text() == "d:b:a:,c:a:"
    assert sorted(lock_stages(root)) == sorted(DIAMOND)


def test_a_gpu_is_shared_by_default_unless_the_user_chose():
    env: dict[str, str] = {}
    share_by_default(env)
    assert env == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    env = {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.3", "TF_FORCE_GPU_ALLOW_GROWTH": "false"}
    share_by_default(env)
    assert env == {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.3", "TF_FORCE_GPU_ALLOW_GROWTH": "false"}
    env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "true"}
    share_by_default(env)
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"


def test_every_stage_process_gets_the_sharing_defaults(tmp_path):
    """What a stage (any process importing dl4cv, under `dvc queue start -j 3` too) sees."""
    code = "import dl4cv, os; print(os.environ['XLA_PYTHON_CLIENT_PREALLOCATE'])"
    env = {k: v for k, v in environment().items() if not k.startswith("XLA_PYTHON_CLIENT")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "false"


# --- the real stages: parallel equals serial, bit for bit -------------------------------------


def timeless(entry: dict) -> dict:
    """A dvc.lock entry without the hashes of models/ and reports/: their files hold wall
    times and MLflow run ids, different in any two runs."""
    keep = {k: v for k, v in entry.items() if k not in ("deps", "outs")}
    for part in ("deps", "outs"):
        keep[part] = [
            f for f in entry.get(part, []) if not f["path"].startswith(("models/", "reports/"))
        ]
    return keep


def drop_timings(metrics: dict) -> dict:
    """A record without what differs between any two runs: wall times and the MLflow run id."""
    return {k: v for k, v in metrics.items() if "seconds" not in k and k != "mlflow_run_id"}


EXPERIMENTS = {
    "knn_digits": {"chapter": 7, "dataset": "digits", "model": {"name": "knn", "n_neighbors": 1}},
    "shallownet_digits": {
        "chapter": 12,
        "dataset": "digits",
        "model": {"name": "shallownet"},
        "optimizer": {"name": "sgd", "learning_rate": 0.05},
        "train": {"batch_size": 32, "epochs": 3},
    },
}


@pytest.mark.integration
def test_the_real_pipeline_in_parallel_equals_the_serial_run(tmp_path):
    """download -> preprocess -> split of the bundled digits, then a k-NN and a ShallowNet
    side by side, each evaluated: the same dvc.lock, the same metrics byte for byte, one
    FINISHED MLflow run per training."""
    pipeline = stages_of("download", "preprocess", "split", "train", "evaluate")
    repos = {}
    for name in ("serial", "parallel"):
        (tmp_path / name).mkdir()
        repos[name] = make_repo(tmp_path / name, digits_params(EXPERIMENTS), pipeline)
    env = environment()
    run([sys.executable, "-m", "dvc", "repro"], repos["serial"], env)
    done = parallel(repos["parallel"], "-j", "2", timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "parallel: 7 stages done" in done.stdout
    serial, par = repos["serial"], repos["parallel"]
    for exp in EXPERIMENTS:
        a, b = (
            json.loads((r / "reports/experiments" / exp / "metrics.json").read_text())
            for r in (serial, par)
        )
        assert a["accuracy"] > 0.5  # both learned the digits (chance: 0.1)
        assert drop_timings(a) == drop_timings(b), exp  # every figure, to the last bit
    lock_a, lock_b = lock_stages(serial), lock_stages(par)
    assert sorted(lock_a) == sorted(lock_b)
    for stage in lock_a:  # the same params, code and data; models and reports hold timings
        assert timeless(lock_a[stage]) == timeless(lock_b[stage]), stage
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{par / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["dl4cv"], output_format="list")
    assert sorted((r.info.run_name, r.info.status) for r in runs) == [
        ("knn_digits", "FINISHED"),
        ("shallownet_digits", "FINISHED"),
    ]


WRITER = """\
import sys
from dl4cv import tracking
with tracking.run(sys.argv[1]):
    tracking.log_params({f"p{i}": i for i in range(30)})
    for step in range(60):  # one store write per epoch, as a training logs them
        tracking.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
"""


def test_six_stages_write_to_a_new_sqlite_store_at_once(tmp_path):
    """Six processes logging runs into a store that does not exist yet, all at once (the
    first creates and migrates it, the others wait for it): none fails with 'database is
    locked', 'duplicate column name' or a second dl4cv experiment."""
    env = environment()
    (tmp_path / "writer.py").write_text(WRITER)
    procs = [
        subprocess.Popen(
            [sys.executable, "writer.py", f"run{i}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(6)
    ]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _ in results), [err[-500:] for _, err in results]
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["dl4cv"], output_format="list")
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 6
    client = mlflow.MlflowClient()
    assert all(len(client.get_metric_history(r.info.run_id, "loss")) == 60 for r in runs)


def test_with_several_gpus_each_local_worker_has_its_own(tmp_path):
    """`--gpus 0,1` (what nvidia-smi would list): worker n runs its stages with
    CUDA_VISIBLE_DEVICES=n, so two stages at once never share a GPU."""
    write = (
        "import os, time; time.sleep(2); "
        "open('{0}.txt', 'w').write(os.environ['CUDA_VISIBLE_DEVICES'])"
    )
    stages = {
        f"g{i}": {"cmd": f'python -c "{write.format(f"g{i}")}"', "outs": [f"g{i}.txt"]}
        for i in range(2)
    }
    tmp_path.joinpath("dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    for args in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        run(args, tmp_path, environment())
    done = parallel(tmp_path, "-j", "2", "--gpus", "0,1")
    assert done.returncode == 0, done.stderr
    assert sorted(tmp_path.joinpath(f"g{i}.txt").read_text() for i in range(2)) == ["0", "1"]
    assert "GPUs 0,1" in done.stdout and " on GPU " in done.stdout


# --- how stages are cut into tasks and ordered (dl4cv.parallel.plan) ---------------------------


def test_a_short_stage_joins_a_task_only_where_it_delays_no_other():
    from dl4cv.parallel.plan import Plan, critical_paths, cut_tasks

    order = [
        "download",
        "preprocess",
        "split",
        "exercise",
        "train@a",
        "evaluate@a",
        "train@b",
        "evaluate@b",
        "report",
    ]
    needs = {
        "download": [],
        "preprocess": ["download"],
        "split": ["preprocess"],
        "exercise": ["preprocess"],  # needs preprocess, not split: split may not delay it
        "train@a": ["split"],
        "evaluate@a": ["train@a"],
        "train@b": ["split"],
        "evaluate@b": ["train@b"],
        "report": ["evaluate@a", "evaluate@b", "train@a", "train@b"],
    }
    tasks, task_needs = cut_tasks(order, needs, {"exercise": 3.0})
    assert tasks == {
        "download": ("download", "preprocess"),  # everyone after download needs preprocess too
        "split": ("split",),  # exercise needs preprocess but not split: split starts a task
        "exercise": ("exercise",),
        "train@a": ("train@a", "evaluate@a"),  # the report needs both
        "train@b": ("train@b", "evaluate@b"),
        "report": ("report",),
    }
    assert task_needs["report"] == ("train@a", "train@b")
    # siblings never share a task: b and c both need a alone
    diamond, _ = cut_tasks(["a", "b", "c"], {"a": [], "b": ["a"], "c": ["a"]}, {})
    assert diamond == {"a": ("a",), "b": ("b",), "c": ("c",)}
    # a long stage never joins: 30 s of training after a 1 s stage
    assert cut_tasks(["a", "train@x"], {"a": [], "train@x": ["a"]}, {})[0] == {
        "a": ("a",),
        "train@x": ("train@x",),
    }
    # the longest chain of work goes first: a's chain holds b's 100 s
    plan = Plan(
        ("a", "b", "c"), {"a": ("a",), "b": ("b",), "c": ("c",)}, {"a": (), "b": ("a",), "c": ()}, 0
    )
    chain = critical_paths(plan, {"a": 2.0, "b": 100.0, "c": 50.0})
    assert chain == {"a": 102.0, "b": 100.0, "c": 50.0}

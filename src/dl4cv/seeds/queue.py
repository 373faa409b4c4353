"""`make seeds`: the whole pipeline for several seeds, as DVC experiments, judged as a spread.

    python -m dl4cv.seeds [--seeds 3] [--start 42] [--gpus 0,1] [--per-gpu K] [--jobs 1]
                          [--profile book] [-S key=value]
    python -m dl4cv.seeds --report-only
    python -m dl4cv.seeds --scheduler tcp://host:8786 [--seeds 3] [--start 42] ...

Queues one `dvc exp run --queue -S seed=<s> -n seed-<s>` per seed (42, 43, 44 by default: the
pipeline's own seed first) and starts DVC's queue workers: on a machine with NVIDIA GPUs (or
`--gpus`), `--per-gpu` workers per GPU, each started with its own CUDA_VISIBLE_DEVICES (worker
n gets GPU n mod count; by default as many as fit, `per_gpu_auto`, each then held to its share
of the GPU's memory); without, `--jobs` workers. Each experiment runs in its own copy under
.dvc/tmp/exps; all log into the repository's MLflow store. It waits,
printing each change of the queue, and exits 1 if a seed failed. Then it writes the spread of
every book figure over every seed the store holds (dl4cv.report.seeds) to reports/seeds.md,
seeds.html, seeds.json and seeds/<id>.png; `--report-only` writes just that.

With `--scheduler`, the seeds run on the workers of that Dask scheduler instead, each in a
clone of the Git remote (dl4cv.cluster), and are pulled back; their runs are in the team's
MLflow server, which MLFLOW_TRACKING_URI must name here too for the report.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from dl4cv import tracking
from dl4cv.cluster import submit as cluster
from dl4cv.cluster.sweep import Experiment
from dl4cv.config import ConfigError
from dl4cv.report import seeds as seed_report
from dl4cv.runtime.gpus import find_gpus, gpu_memory_gib
from dl4cv.runtime.paths import REPORTS
from dl4cv.seeds import runs as seed_runs

PROFILES = ("book", "quick")
FIRST_SEED = 42
POLL_SECONDS = 5.0
WORKER_START_SECONDS = 120.0  # a queue worker registers within seconds; give up waiting after
WORKERS = re.compile(r"Worker status: (\d+) active, (\d+) idle")
# A row of `dvc queue status`: Task  Name  Created  Status
STATUS_ROW = re.compile(r"^\S+\s+(\S+)\s.*\b(Queued|Running|Success|Failed)\s*$", re.M)
DONE = ("Success", "Failed")
# A whole-book worker on a shared GPU: its stages' CPU work (decoding, bookkeeping, evaluation)
# wants about this many cores, its largest training (CIFAR-10 held on the GPU by the scan
# runner, MiniVGGNet) a few GiB of memory; per_gpu_auto keeps every worker inside both.
CORES_PER_WORKER = 4
GIB_PER_WORKER = 16
GPU_MEMORY_SHARE = 0.9  # of a GPU's memory, split between the workers that share it


class SeedsError(Exception):
    """Bad input or a failed seed: one line for the user."""


def names(seeds: Sequence[int]) -> list[str]:
    return [f"seed-{s}" for s in seeds]


def dvc(*args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    """Run `dvc` with this interpreter; a failure raises SeedsError with its last line.

    Its output goes through a file, not a pipe: `dvc queue start` leaves worker daemons that
    inherit the pipe, and reading it to its end would wait for every experiment to finish."""
    with tempfile.TemporaryFile(mode="w+") as out, tempfile.TemporaryFile(mode="w+") as err:
        result = subprocess.run(
            [sys.executable, "-m", "dvc", *args], stdout=out, stderr=err, check=False, env=env
        )
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if check and result.returncode != 0:
        lines = (stderr or stdout).strip().splitlines() or ["no output"]
        raise SeedsError(f"dvc {' '.join(args)} failed: {lines[-1]}")
    return stdout


def queue(seeds: Sequence[int], profile: str, extra: Sequence[str]) -> None:
    """One queued experiment per seed; none if any name is taken for this commit."""
    taken = set(dvc("exp", "list", "--name-only").split())
    clash = [n for n in names(seeds) if n in taken]
    if clash:
        raise SeedsError(
            f"{', '.join(clash)} already exist for this commit: "
            f"dvc exp remove {' '.join(clash)}, or pick other seeds (--start)"
        )
    sets = [a for kv in [f"profile={profile}", *extra] for a in ("-S", kv)]
    for seed, name in zip(seeds, names(seeds), strict=True):
        dvc("exp", "run", "--queue", *sets, "-S", f"seed={seed}", "-n", name)


def statuses(wanted: Sequence[str]) -> dict[str, str]:
    """The queue status of each of `wanted` that `dvc queue status` lists."""
    found = dict(STATUS_ROW.findall(dvc("queue", "status")))
    return {name: found[name] for name in wanted if name in found}


def wait(wanted: Sequence[str], poll: float = POLL_SECONDS) -> dict[str, str]:
    """Poll the queue until every one of `wanted` has ended; print each change."""
    started, last = time.monotonic(), ""
    while True:
        now = statuses(wanted)
        counts = {s: sum(v == s for v in now.values()) for s in ("Queued", "Running", *DONE)}
        line = ", ".join(f"{n} {s.lower()}" for s, n in counts.items())
        if line != last:
            print(f"seeds: {line} ({time.monotonic() - started:.0f} s)", flush=True)
            last = line
        if len(now) == len(wanted) and all(v in DONE for v in now.values()):
            return now
        time.sleep(poll)


def per_gpu_auto(n_seeds: int, n_gpus: int, cores: int, gib: float) -> int:
    """Workers per GPU: enough that every seed has one, no more than the cores and each GPU's
    memory carry (CORES_PER_WORKER, GIB_PER_WORKER), at least one."""
    wanted = -(-n_seeds // n_gpus)
    return max(1, min(wanted, cores // (CORES_PER_WORKER * n_gpus), int(gib // GIB_PER_WORKER)))


def shared_gpu_env(per_gpu: int) -> dict[str, str]:
    """What workers sharing a GPU need: JAX would take 75 % of its memory in every process,
    TensorFlow all of it; each worker is held to its share (settings already set win)."""
    if per_gpu < 2:
        return {}
    share = {
        "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{GPU_MEMORY_SHARE / per_gpu:.2f}",
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
    }
    return {k: v for k, v in share.items() if k not in os.environ}


def worker_devices(gpus: Sequence[str], per_gpu: int) -> list[str]:
    """CUDA_VISIBLE_DEVICES of queue workers 1, 2, ...: round robin, so that the first workers
    (the ones with work when there are few seeds) each have a GPU of their own."""
    return [gpus[i % len(gpus)] for i in range(len(gpus) * per_gpu)]


def start_workers(
    devices: Sequence[str], jobs: int, poll: float, shared: dict[str, str] | None = None
) -> None:
    """`dvc queue start`. With `devices`, one call per worker: DVC starts the workers 1..j that
    are not running yet, in the caller's environment, so worker j inherits devices[j - 1] (and
    `shared`, the settings of workers sharing a GPU) once worker j - 1 is up."""
    if not devices:
        dvc("queue", "start", "-j", str(jobs))
        return
    shared = shared or {}
    extra = " ".join(f"{k}={v}" for k, v in shared.items())
    for count, device in enumerate(devices, start=1):
        env = os.environ | shared | {"CUDA_VISIBLE_DEVICES": device}
        dvc("queue", "start", "-j", str(count), env=env)
        print(f"seeds: queue worker {count} on GPU {device} {extra}".rstrip(), flush=True)
        deadline = time.monotonic() + WORKER_START_SECONDS
        while count < len(devices) and workers_up() < count and time.monotonic() < deadline:
            time.sleep(min(poll, 1.0))


def workers_up() -> int:
    """Queue workers DVC knows of, busy or idle."""
    found = WORKERS.search(dvc("queue", "status"))
    return int(found[1]) + int(found[2]) if found else 0


def write_report(out_dir: Path = REPORTS) -> list[Path]:
    from dl4cv.figures import FIGURES_FILE, load_figures

    section = seed_report.build(load_figures(FIGURES_FILE), seed_runs.collect())
    return seed_report.write(section, out_dir)


def run(
    seeds: Sequence[int],
    devices: Sequence[str],
    jobs: int,
    profile: str,
    extra: Sequence[str],
    poll: float,
    shared: dict[str, str] | None = None,
) -> list[Path]:
    """Queue, run and wait for `seeds` (workers pinned to `devices`, else `jobs` of them); the
    spread report's paths."""
    queue(seeds, profile, extra)
    tracking.prepare()
    start_workers(devices, jobs, poll, shared)
    ended = wait(names(seeds), poll)
    failed = [name for name, status in ended.items() if status == "Failed"]
    if failed:
        raise SeedsError(f"{', '.join(failed)} failed: see dvc queue logs {failed[0]}")
    return write_report()


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dl4cv.seeds", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds (default 3)")
    parser.add_argument("--start", type=int, default=FIRST_SEED, help="the first seed (42)")
    parser.add_argument(
        "--jobs", "-j", type=int, default=1, help="experiments at a time, without GPUs"
    )
    parser.add_argument(
        "--gpus", help="GPU indices, e.g. 0,1, or none (default: what nvidia-smi -L lists)"
    )
    parser.add_argument(
        "--per-gpu",
        type=int,
        help="queue workers per GPU (default: as many as fit, at most one per seed)",
    )
    parser.add_argument("--profile", default="book", help="book (default) or quick")
    more = "more params for every seed (dvc exp run -S)"
    parser.add_argument("-S", "--set-param", dest="extra", action="append", default=[], help=more)
    parser.add_argument("--report-only", action="store_true", help="write reports/seeds.* only")
    parser.add_argument(
        "--scheduler", help="run the seeds on this Dask scheduler's workers (dl4cv.cluster)"
    )
    parser.add_argument("--poll", type=float, default=POLL_SECONDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seeds < 1:
        raise SeedsError(f"--seeds: expected at least 1, got {args.seeds}")
    if args.jobs < 1:
        raise SeedsError(f"--jobs: expected at least 1, got {args.jobs}")
    if args.per_gpu is not None and args.per_gpu < 1:
        raise SeedsError(f"--per-gpu: expected at least 1, got {args.per_gpu}")
    if args.gpus is not None and not re.fullmatch(r"none|\d+(,\d+)*", args.gpus):
        raise SeedsError(f"--gpus: expected indices like 0,1 or none, got {args.gpus!r}")
    if args.profile not in PROFILES:
        raise SeedsError(f"--profile: expected one of {', '.join(PROFILES)}, got {args.profile!r}")
    bad = [kv for kv in args.extra if "=" not in kv or kv.split("=", 1)[0] in ("seed", "profile")]
    if bad:
        raise SeedsError(
            f"-S {bad[0]}: expected KEY=VALUE, not seed or profile (use --start, --profile)"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
        if args.report_only:
            paths = write_report()
        elif args.scheduler:
            seeds = range(args.start, args.start + args.seeds)
            sets = (f"profile={args.profile}", *args.extra)
            cluster.run(
                [Experiment(f"seed-{s}", (*sets, f"seed={s}")) for s in seeds],
                args.scheduler,
            )
            paths = write_report()
        else:
            seeds = range(args.start, args.start + args.seeds)
            gpus = (
                find_gpus()
                if args.gpus is None
                else [g for g in args.gpus.split(",") if g != "none"]
            )
            per_gpu = args.per_gpu or (
                per_gpu_auto(len(seeds), len(gpus), os.cpu_count() or 1, gpu_memory_gib())
                if gpus
                else 1
            )
            devices = worker_devices(gpus, per_gpu) if gpus else []
            paths = run(
                seeds,
                devices,
                args.jobs,
                args.profile,
                args.extra,
                args.poll,
                shared_gpu_env(per_gpu),
            )
    except (SeedsError, ConfigError, cluster.ClusterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"seeds: spread written to {', '.join(str(p) for p in paths if p.suffix != '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

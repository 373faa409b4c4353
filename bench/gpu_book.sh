#!/usr/bin/env bash
# The whole book through `dvc repro` on one GPU, from clean, then minivggnet_cifar10 retrained
# to measure the compile cache and GPU determinism (issue 9). Run from the repository root on
# the GPU machine, after installing the wheelhouse (docs/gpu.md, "Offline GPU server"):
#   setsid bash bench/gpu_book.sh MIRROR OUT > OUT/driver.log 2>&1 &
# Writes into OUT: repro.log (every line timestamped), gpu_util.csv (nvidia-smi, 1 s), stages.md
# (seconds per stage, sorted), reruns.log, reruns.jsonl, reports.tar.gz, runs.tar.gz, DONE.
# RERUNS=0 skips the reruns. SEEDS=n then runs `python -m dl4cv.seeds --seeds n` (seeds.log,
# seeds_gpu.csv, seeds.tar.gz: reports/seeds.*), ABLATIONS=1 the DVC experiments of
# bench/ablations.txt through bench/ablate.sh (ablate.log, ablations.md); each step ends with
# a *.done file.
set -uo pipefail
mirror=$(realpath "$1") out=$(realpath "$2")
export KERAS_BACKEND=jax DL4CV_MIRROR=$mirror PYTHONUNBUFFERED=1
stamp() { python3 -u bench/stamp.py; }

if [ ! -d .git ]; then  # the device receives a copy of the working tree without .git
    git init -q && git add -A && git -c user.name=bench -c user.email=bench@localhost commit -qm book
fi
rm -rf data models reports mlflow.db mlartifacts dvc.lock .cache
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -lms 1000 \
    > "$out/gpu_util.csv" &
sampler=$!
start=$(date +%s.%N)
dvc repro 2>&1 | stamp > "$out/repro.log"
echo "dvc repro exit ${PIPESTATUS[0]}, $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s" \
    | stamp >> "$out/repro.log"
kill "$sampler"
python3 bench/stage_times.py "$out/repro.log" > "$out/stages.md"

# Reruns of minivggnet_cifar10 with the compile cache warm (compile seconds saved), twice
# (determinism); DETERMINISTIC=1 adds two with XLA's deterministic GPU ops (their cost).
rerun() {
    dvc repro -f -s train@minivggnet_cifar10 2>&1 | stamp >> "$out/reruns.log"
    python3 - "$1" >> "$out/reruns.jsonl" <<'EOF'
import json, sys
run = json.load(open("models/minivggnet_cifar10/model/run.json"))
history = json.load(open("models/minivggnet_cifar10/model/history.json"))
keys = ("runner", "dtype_policy", "train_seconds", "first_epoch_seconds", "epoch_seconds_median")
print(json.dumps({"label": sys.argv[1], **{k: run.get(k) for k in keys},
                  "val_accuracy": history["val_accuracy"], "loss": history["loss"]}))
EOF
}
cp models/minivggnet_cifar10/model/run.json "$out/minivggnet_first_run.json"
tar czf "$out/book.tar.gz" reports dvc.lock models/*/model/run.json models/*/model/history.json
touch "$out/book.done"
if [ "${RERUNS:-1}" = 1 ]; then
    rerun cache-warm-1
    rerun cache-warm-2
fi
if [ "${DETERMINISTIC:-0}" = 1 ]; then
    XLA_FLAGS=--xla_gpu_deterministic_ops=true rerun deterministic-1
    XLA_FLAGS=--xla_gpu_deterministic_ops=true rerun deterministic-2
fi
tar czf "$out/reports.tar.gz" reports dvc.lock
tar czf "$out/runs.tar.gz" models/*/model/run.json models/*/model/history.json \
    "$out/minivggnet_first_run.json" 2>/dev/null

sample() {  # nvidia-smi every second, every GPU, into $1, until killed
    nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used --format=csv,noheader \
        -lms 1000 > "$1" &
}
if [ "${SEEDS:-0}" -gt 0 ]; then  # the book's spread (issue 10): seed 42 first, restored if cached
    sample "$out/seeds_gpu.csv"
    sampler=$!
    start=$(date +%s.%N)
    python3 -m dl4cv.seeds --seeds "$SEEDS" --poll 2 ${SEEDS_ARGS:-} 2>&1 | stamp > "$out/seeds.log"
    echo "seeds exit ${PIPESTATUS[0]}, $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s" \
        | stamp >> "$out/seeds.log"
    kill "$sampler"
    dvc queue status 2>&1 | stamp >> "$out/seeds.log"
    tar czf "$out/seeds.tar.gz" reports/seeds* 2>/dev/null
    touch "$out/seeds.done"
fi
if [ "${ABLATIONS:-0}" = 1 ]; then  # causes of the misses (issue 10), one after another
    bash bench/ablate.sh "$out" $(grep -v '^#' bench/ablations.txt | awk '{print $1}')
    touch "$out/ablations.done"
fi
touch "$out/DONE"

#!/usr/bin/env bash
# The whole book on one GPU, stages in parallel against one after another, a DVC queue sweep
# sharing the GPU, and the same under NVIDIA MPS (issue 19). Run from the repository root on the
# GPU machine, after installing the wheelhouse (docs/gpu.md, "Offline GPU server"):
#   setsid bash bench/gpu_parallel.sh MIRROR OUT > OUT/driver.log 2>&1 &
# Steps, each from clean (no data, models, store or compile cache) unless said otherwise:
#   jobsN   python -m dl4cv.parallel --jobs $JOBS (default 6)
#   sweep   on jobsN's workspace: 3 learning rates of lenet_mnist queued and run by
#           `dvc queue start -j 3` with no flag, then the same 3 as `dvc exp run` one by one
#   mps     jobsN again with NVIDIA MPS's daemon running
#   serial  dvc repro
# STEPS="jobs sweep mps serial" (the default) picks and orders them.
# Writes into OUT, per step: NAME.log (every line timestamped), NAME.gpu.csv (nvidia-smi, 1 s),
# NAME.tar.gz (reports/book.*, reports/metrics, dvc.lock, logs/repro), a line in summary.md
# (wall seconds, exit status, GPU busy share), then NAME.done; DONE at the end.
set -uo pipefail
mirror=$(realpath "$1") out=$(realpath "$2")
jobs=${JOBS:-6}
export KERAS_BACKEND=jax DL4CV_MIRROR=$mirror PYTHONUNBUFFERED=1
stamp() { python3 -u bench/stamp.py; }
now() { date +%s.%N; }
since() { python3 -c "print(round($(now) - $1, 1))"; }
busy() {  # busy GPU.CSV: share of 1 s samples with the GPU busy, and the mean utilisation
    python3 - "$1" <<'EOF'
import sys
u = [int(l.split(",")[1].split()[0]) for l in open(sys.argv[1]) if "%" in l]
print(f"GPU busy in {sum(x > 0 for x in u) / max(len(u), 1):.0%} of {len(u)} samples, mean {sum(u) / max(len(u), 1):.0f} %")
EOF
}

if [ ! -d .git ]; then  # the device receives a copy of the working tree without .git
    git init -q && git add -A && git -c user.name=bench -c user.email=bench@localhost commit -qm book
fi
git config user.name bench && git config user.email bench@localhost  # dvc exp needs them

clean() {
    python3 -m dl4cv.runtime.warmstart stop >/dev/null 2>&1
    rm -rf data models reports mlflow.db mlflow.db.lock mlartifacts dvc.lock .cache logs
    git checkout -q params.yaml
}

step() {  # step NAME COMMAND...: run it with nvidia-smi sampling, log and summarise
    local name=$1; shift
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader \
        -lms 1000 > "$out/$name.gpu.csv" &
    local sampler=$! start
    start=$(now)
    "$@" 2>&1 | stamp > "$out/$name.log"
    local code=${PIPESTATUS[0]} wall
    wall=$(since "$start")
    kill "$sampler"
    echo "$name: exit $code, $wall s; $(busy "$out/$name.gpu.csv")" | tee -a "$out/summary.md" | stamp >> "$out/$name.log"
    tar czf "$out/$name.tar.gz" reports/book.* reports/metrics dvc.lock logs/repro 2>/dev/null
    touch "$out/$name.done"
}

steps=${STEPS:-jobs sweep mps serial}
has() { [[ " $steps " == *" $1 "* ]]; }
if has jobs; then
    clean
    step "jobs$jobs" python3 -m dl4cv.parallel --jobs "$jobs"
fi

# The sweep of the issue, with no flag: every stage process shares the GPU by default.
LR=experiments.lenet_mnist.optimizer.learning_rate
queue_sweep() {  # ends when all 3 have ended (`queue status` waits for DVC's lock, which
    # the workers hold now and then: without it, it may print nothing)
    dvc exp run --queue -S "$LR=0.005,0.02,0.04" && dvc queue start -j 3 || return 1
    local status
    while :; do
        status=$(dvc --wait-for-lock queue status 2>&1)
        if [ "$(grep -cE 'Success|Failed' <<<"$status")" -ge 3 ] && ! grep -qE 'Queued|Running' <<<"$status"; then
            break
        fi
        sleep 2
    done
    echo "$status"
    ! grep -q Failed <<<"$status"
}
one_by_one() {
    for lr in 0.005 0.02 0.04; do dvc exp run -S "$LR=$lr" || return 1; done
    git checkout -q params.yaml
}
if has sweep; then
    # the experiments start from a commit of the finished book (dvc.lock, whose outputs are
    # in the cache): only lenet_mnist and what follows it run again
    git add -A && git commit -qm "the book, done" --allow-empty
    step sweep-queue queue_sweep
    step sweep-serial one_by_one
    dvc exp show --no-pager --drop 'Created|.*/' --keep "$LR|lenet_mnist\.accuracy" > "$out/sweep-exps.txt" 2>&1
    git reset -q --soft HEAD~1
fi
if has mps; then
    clean
    if nvidia-cuda-mps-control -d > "$out/mps.txt" 2>&1; then
        step "mps-jobs$jobs" python3 -m dl4cv.parallel --jobs "$jobs"
        echo quit | nvidia-cuda-mps-control >> "$out/mps.txt" 2>&1
    else
        echo "nvidia-cuda-mps-control -d failed: $(cat "$out/mps.txt")" | tee -a "$out/summary.md"
    fi
fi
if has serial; then
    clean
    step serial dvc repro
fi
touch "$out/DONE"

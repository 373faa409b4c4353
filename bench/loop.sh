#!/usr/bin/env bash
# The loops a person lives in, measured as whole processes the way a user runs them, side by
# side with DVC's own floor (issue 8). Every line of the log carries a timestamp.
#
#   bench/loop.sh [--ci] [--venv DIR] [--mirror DIR] [--log FILE]
#
# 1. `make quick` in a fresh clone of this repository (the venv given by --venv already
#    exists; make re-installs the clone into it, as it would for a user);
# 2. in that clone, one edit of lenet_mnist:
#    `dvc exp run -S profile=quick -S experiments.lenet_mnist.optimizer.learning_rate=0.015`:
#    wall time, the training's own seconds (models/lenet_mnist/model/run.json) and the rest;
# 3. a no-op `dvc repro` (-S profile=quick as the lock has it), median of 5;
# 4. DVC's floor: the same no-op in a repository of as many trivial stages, each reading one
#    key of the same params.yaml;
# 5. with --ci: `CI=true bash .ci/run` in another fresh clone (install included).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-/work/bench-venv}
mirror=${DL4CV_MIRROR:-$here/../shared/datasets}
log=""
ci=0
while [ $# -gt 0 ]; do
    case $1 in
        --ci) ci=1 ;;
        --venv) venv=$2; shift ;;
        --mirror) mirror=$2; shift ;;
        --log) log=$2; shift ;;
        *) echo "usage: bench/loop.sh [--ci] [--venv DIR] [--mirror DIR] [--log FILE]" >&2; exit 2 ;;
    esac
    shift
done
[ -x "$venv/bin/python" ] || { echo "bench/loop.sh: no venv at $venv (make setup VENV=$venv)" >&2; exit 1; }
[ -f "$mirror/mirror.json" ] || { echo "bench/loop.sh: no mirror.json in $mirror" >&2; exit 1; }
venv=$(cd "$venv" && pwd)
mirror=$(cd "$mirror" && pwd)
work=$(mktemp -d /tmp/dl4cv-loop.XXXXXX)
[ -n "$log" ] && log=$(realpath -m "$log") || log=$work/loop.log
export DL4CV_MIRROR=$mirror
export PATH="$venv/bin:$PATH"

stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date +%H:%M:%S.%N | cut -c1-12)" "$line"; done; }
say() { echo "$*" | stamp | tee -a "$log"; }
now() { date +%s.%N; }
took() { echo "$(now) - $1" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
run_logged() { "$@" 2>&1 | stamp >>"$log"; return "${PIPESTATUS[0]}"; }

say "bench/loop.sh: $(git -C "$here" rev-parse --short HEAD), $(nproc) cores, venv $venv, mirror $mirror"
say "work folder $work, raw log $log"
python -m dl4cv.runtime.warmstart stop >/dev/null 2>&1 || true  # every figure starts without a server

# 1. make quick in a fresh clone
git clone -q "$here" "$work/clone"
cd "$work/clone"
t=$(now)
run_logged make quick VENV="$venv"
quick=$(took "$t")
say "make quick (fresh clone): $(printf %.1f "$quick") s"

# 2. one edit of lenet_mnist
t=$(now)
run_logged dvc exp run -S profile=quick -S experiments.lenet_mnist.optimizer.learning_rate=0.015
edit=$(took "$t")
train=$(python -c "import json; print(json.load(open('models/lenet_mnist/model/run.json'))['train_seconds'])")
say "edit -> result: $(printf %.1f "$edit") s wall, of which training $(printf %.1f "$train") s: $(printf %.1f "$(echo "$edit - $train" | bc)") s beyond the training"

# 3. no-op dvc repro, median of 5
noop() {
    local times=()
    for _ in 1 2 3 4 5; do
        local t0 out
        t0=$(now)
        out=$(dvc repro 2>&1)
        times+=("$(took "$t0")")
        grep -q "up to date" <<<"$out" || { say "not a no-op:" >&2; echo "$out" | stamp >>"$log"; exit 1; }
    done
    say "  runs: ${times[*]}" >&2  # stdout carries the median alone
    printf '%s\n' "${times[@]}" | median
}
stages=$(dvc stage list | wc -l)
say "no-op dvc repro ($stages stages): median of 5 $(printf %.2f "$(noop)") s"

# 4. DVC's floor: as many trivial stages, each with one params key of the same params.yaml
mkdir "$work/floor"
cp params.yaml "$work/floor/"
cd "$work/floor"
git init -q && dvc init -q
{
    echo "stages:"
    for i in $(seq 1 "$stages"); do
        printf '  s%d:\n    cmd: echo %d > out%d\n    params: [seed]\n    outs: [out%d]\n' "$i" "$i" "$i" "$i"
    done
} >dvc.yaml
dvc repro -q >/dev/null
say "DVC floor ($stages trivial stages, same params.yaml): median of 5 $(printf %.2f "$(noop)") s"

# 5. CI from a fresh clone, install included
if [ "$ci" = 1 ]; then
    git clone -q "$here" "$work/ci"
    ln -s "$(cd "$here/../shared" && pwd)" "$work/shared" 2>/dev/null || true
    cd "$work/ci"
    t=$(now)
    # CI's own venv (.venv in the clone), not the one this script was given
    if run_logged env -u VENV CI=true bash .ci/run; then status=passed; else status=FAILED; fi
    say "CI=true bash .ci/run (fresh clone, install included): $(printf %.1f "$(took "$t")") s, $status"
fi
python -m dl4cv.runtime.warmstart stop >/dev/null 2>&1 || true
say "done"

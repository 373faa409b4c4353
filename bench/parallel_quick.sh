#!/usr/bin/env bash
# `make quick` against `make quick JOBS=N` (issue 19), each in its own fresh clone of this
# repository, one after the other on a quiet machine, as whole processes the way a user runs them.
#
#   bench/parallel_quick.sh [--jobs N] [--venv DIR] [--mirror DIR] [--out DIR]
#
# Writes into OUT: serial.log and jobsN.log (every line timestamped), cpu.txt (the share of the
# cores busy during each run, from /proc/stat), metrics.diff (reports/metrics/*.json of the two
# clones, compared byte for byte), lock.diff (dvc.lock of both, as parsed YAML) and summary.md.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
jobs=2 venv=$here/.venv mirror=${DL4CV_MIRROR:-$here/../shared/datasets} out=""
while [ $# -gt 0 ]; do
    case $1 in
        --jobs) jobs=$2; shift ;;
        --venv) venv=$2; shift ;;
        --mirror) mirror=$2; shift ;;
        --out) out=$2; shift ;;
        *) echo "usage: bench/parallel_quick.sh [--jobs N] [--venv DIR] [--mirror DIR] [--out DIR]" >&2; exit 2 ;;
    esac
    shift
done
venv=$(cd "$venv" && pwd) mirror=$(cd "$mirror" && pwd)
work=$(mktemp -d /tmp/dl4cv-parallel.XXXXXX)
out=$(realpath -m "${out:-$work/out}")
mkdir -p "$out"
export DL4CV_MIRROR=$mirror PATH="$venv/bin:$PATH"
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date +%H:%M:%S.%N | cut -c1-12)" "$line"; done; }
busy() { awk '/^cpu / {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }

one() {  # one() NAME MAKE-ARGS...: make quick in a fresh clone; prints its wall seconds
    local name=$1; shift
    git clone -q "$here" "$work/$name"
    python -m dl4cv.runtime.warmstart stop >/dev/null 2>&1 || true  # every run starts without a server
    read -r b0 t0 < <(busy)
    local start end
    start=$(date +%s.%N)
    (cd "$work/$name" && make quick VENV="$venv" "$@") 2>&1 | grep -v "^WARNING: Location" | stamp > "$out/$name.log"
    end=$(date +%s.%N)
    read -r b1 t1 < <(busy)
    echo "$name: cores busy $(echo "scale=3; ($b1 - $b0) / ($t1 - $t0)" | bc)" >> "$out/cpu.txt"
    echo "$end - $start" | bc
}

serial=$(one serial)
parallel=$(one "jobs$jobs" JOBS="$jobs")
(cd "$work" && for f in serial/reports/metrics/*.json; do cmp "$f" "jobs$jobs/${f#serial/}" || echo "DIFFERS $f"; done) > "$out/metrics.diff" 2>&1 || true
cp "$work/serial/dvc.lock" "$out/serial.dvc.lock"
cp "$work/jobs$jobs/dvc.lock" "$out/jobs$jobs.dvc.lock"
# Entries compared whole, then without models/ and reports/ (their files hold wall times and
# MLflow run ids, which differ between any two runs, serial or not).
python - "$work/serial/dvc.lock" "$work/jobs$jobs/dvc.lock" > "$out/lock.diff" <<'PY'
import sys, yaml
a, b = (yaml.safe_load(open(p))["stages"] for p in sys.argv[1:])
def timeless(entry):
    keep = {k: v for k, v in entry.items() if k not in ("deps", "outs")}
    for part in ("deps", "outs"):
        keep[part] = [f for f in entry.get(part, []) if not f["path"].startswith(("models/", "reports/"))]
    return keep
whole = [n for n in sorted(set(a) | set(b)) if a.get(n) != b.get(n)]
other = [n for n in whole if n not in a or n not in b or timeless(a[n]) != timeless(b[n])]
for name in whole:
    print(f"{name}: differs{' beyond models/ and reports/' if name in other else ' in models/ or reports/ only'}")
print(f"{len(a)} stages in the serial lock, {len(b)} in the parallel one, {len(whole)} entries differ, {len(other)} beyond models/ and reports/")
PY
n=$(ls "$work/serial/reports/metrics/"*.json | wc -l)
{
    echo "| run | wall s |"
    echo "|---|---|"
    echo "| make quick | $(printf %.1f "$serial") |"
    echo "| make quick JOBS=$jobs | $(printf %.1f "$parallel") |"
    echo
    echo "ratio $(echo "scale=3; $parallel / $serial" | bc); $(nproc) cores; $(git -C "$here" rev-parse --short HEAD)"
    echo "reports/metrics: $n files, $(grep -c DIFFERS "$out/metrics.diff" || true) differ"
    echo "dvc.lock: $(tail -1 "$out/lock.diff")"
    cat "$out/cpu.txt"
} > "$out/summary.md"
cat "$out/summary.md"
rm -rf "$work/serial" "$work/jobs$jobs"

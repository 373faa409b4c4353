#!/usr/bin/env bash
# Ablations of bench/ablations.txt, one after another in the workspace (no queue, no worker to
# outlive the machine): the baseline of each target first (`dvc repro`), then each named
# ablation as a DVC experiment of its target, params.yaml put back between them, and last the
# table (bench/ablation_table.py). Usage, from the repository root:
#   bash bench/ablate.sh OUT NAME...        e.g. OUT abl-minivgg-no-decay abl-minivgg-float32
# Writes OUT/ablate.log (timestamped) and OUT/ablations.md.
set -uo pipefail
out=$(realpath "$1")
shift
stamp() { python3 -u -c '
import sys, time
for line in sys.stdin:
    t = time.time()
    print(time.strftime("%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}", line, end="")
'; }
chosen=$(mktemp)
for name in "$@"; do grep "^$name " bench/ablations.txt >> "$chosen"; done
cp params.yaml "$out/params.yaml.orig"
{
    for target in $(awk '{print $2}' "$chosen" | sort -u); do
        echo "== baseline: dvc repro $target"
        dvc repro "$target"
    done
    while read -r name target sets; do
        args=()
        for kv in $sets; do args+=(-S "$kv"); done
        echo "== $name: dvc exp run -n $name ${args[*]} $target"
        dvc exp run -n "$name" "${args[@]}" "$target" < /dev/null
        cp "$out/params.yaml.orig" params.yaml
    done < "$chosen"
    python3 bench/ablation_table.py "$chosen" > "$out/ablations.md"
    echo "== done"
} 2>&1 | stamp > "$out/ablate.log"

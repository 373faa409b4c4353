"""Markdown table of bench/gpu_cifar10.py results: python bench/summarize.py FILE.jsonl..."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def fmt(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(paths: list[str]) -> None:
    print(
        "| experiment | runner | policy | spe / unroll | epochs | accuracy | weighted precision "
        "| final val_accuracy | s/epoch (2..N) | wall s/epoch | first epoch s | device | file |"
    )
    print("|" + "---|" * 13)
    for path in paths:
        for line in Path(path).read_text().splitlines():
            r = json.loads(line)
            knob = (
                f"spe {r['steps_per_execution']}"
                if r["runner"] == "keras"
                else f"unroll {r['unroll']}"
                if r.get("unroll")  # runs of the former bench/jax_scan_fit.py
                else "-"
            )
            if r.get("checkpoint_interval_s"):
                knob += f", ckpt {r['checkpoint_interval_s']:g} s"
            device = ", ".join(r["env"].get("devices", [])) or r["env"]["backend"]
            print(
                f"| {r['experiment']} | {r['runner']} | {r['policy']} | {knob} | {r['epochs']} "
                f"| {fmt(r['accuracy'])} | {fmt(r['precision_weighted'])} "
                f"| {fmt(r['final_val_accuracy'])} | {fmt(r['seconds_per_epoch'], 3)} "
                f"| {fmt(r['wall_seconds_per_epoch'], 3)} | {fmt(r['first_epoch_seconds'], 1)} "
                f"| {device} | {path.rsplit('/', 1)[-1]} |"
            )


if __name__ == "__main__":
    main(sys.argv[1:])

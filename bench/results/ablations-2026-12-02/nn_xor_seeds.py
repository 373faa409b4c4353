"""nn_xor's final loss over seeds: is the book's 0.000245 a seed away from ours (issue 10)?

    # seeds 0..11 by default
    python bench/results/ablations-2026-12-02/nn_xor_seeds.py [first] [last]

Runs the exercise's own runner (params.yaml's nn_xor settings) once per seed, prints one line
per seed and the count below the book's figure plus its tolerance.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from dl4cv.config import load_params
from dl4cv.exercises.networks import neural_network

BOOK, TOLERANCE = 0.000245, 0.001


def main(argv: list[str]) -> int:
    first, last = (int(a) for a in argv) if argv else (0, 11)
    params = load_params()
    exercise = params.exercise("nn_xor")
    below = 0
    for seed in range(first, last + 1):
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            outcome = neural_network(exercise, replace(params, seed=seed), Path(tmp))
        loss, correct = outcome.metrics["final_loss"], outcome.metrics["correct"]
        below += loss <= BOOK + TOLERANCE
        print(f"seed {seed:3d}: final loss {loss:.6f}, {correct}/4 correct, {outcome.tags}")
    print(f"{below} of {last - first + 1} seeds at or below the book's {BOOK} + {TOLERANCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

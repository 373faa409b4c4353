"""Preprocessing throughput: our loader against a plain sequential imread-and-resize loop.

The baseline is what the book does: walk the extracted class folders, cv2.imread each file,
cv2.resize to 32x32 with INTER_AREA, one image after the other. Ours reads the zip in place
with SimpleDatasetLoader (threads, optional reduced-size JPEG decoding).

    python bench/preprocess_speed.py data/raw/animals/animals.zip --root animals
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np

from dl4cv.data.loaders import SimpleDatasetLoader, ZipSource
from dl4cv.preprocessing import ImageDecoder, ImageToArrayPreprocessor, SimplePreprocessor


def baseline(folder: Path, size: int) -> tuple[int, float]:
    start = time.perf_counter()
    count = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            image = cv2.imread(str(path))
            if image is not None:
                cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
                count += 1
    return count, time.perf_counter() - start


def ours(archive: Path, root: str | None, size: int, fast: bool, workers: int) -> tuple:
    loader = SimpleDatasetLoader(
        ImageDecoder(3, (size, size), fast=fast),
        [SimplePreprocessor(size, size), ImageToArrayPreprocessor()],
        workers=workers,
    )
    start = time.perf_counter()
    loaded = loader.load(ZipSource(archive, root), progress=False)
    return loaded, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("archive", type=Path)
    parser.add_argument("--root", default=None)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(args.archive) as archive:
            archive.extractall(tmp)
        folder = Path(tmp) / (args.root or "")
        baseline(folder, args.size)  # warm the page cache for a fair baseline
        runs = [baseline(folder, args.size) for _ in range(args.repeat)]
        count, seconds = runs[0][0], min(r[1] for r in runs)
        results["baseline_sequential"] = {
            "images": count,
            "seconds": seconds,
            "images_per_s": count / seconds,
        }
    exact = None
    for fast in (False, True):
        for workers in (1, 0):
            runs = [
                ours(args.archive, args.root, args.size, fast, workers) for _ in range(args.repeat)
            ]
            loaded, seconds = runs[0][0], min(r[1] for r in runs)
            name = f"loader_fast{int(fast)}_workers{workers or 'all'}"
            entry = {
                "images": len(loaded.labels),
                "rejects": len(loaded.rejects),
                "seconds": seconds,
                "images_per_s": len(loaded.labels) / seconds,
                "speedup": results["baseline_sequential"]["seconds"] / seconds,
            }
            if exact is None:
                exact = loaded.data
            else:
                diff = np.abs(loaded.data.astype(int) - exact.astype(int))
                entry["mean_abs_diff_vs_full_decode"] = float(diff.mean())
            results[name] = entry
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

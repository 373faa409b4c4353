"""Ch 11: the hand-written convolution against cv2.filter2D on a real photo, kernel by kernel."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from dl4cv.config import ConvolutionsSettings, Exercise, Params
from dl4cv.evaluation import plt
from dl4cv.exercises import Outcome, save_figure
from dl4cv.preprocessing.convolution import KERNELS, convolve, opencv_convolve, to_uint8
from dl4cv.runtime.fileio import atomic_path


def sample_image(name: str) -> Path:
    """A photo that ships with scikit-learn (sklearn/datasets/images): no download needed."""
    return Path(str(resources.files("sklearn.datasets") / "images" / name))


def convolutions(exercise: Exercise, params: Params, figures: Path) -> Outcome:
    """Convolve the grayscale photo with each kernel both ways; save ours, compare them."""
    settings = exercise.settings
    assert isinstance(settings, ConvolutionsSettings)
    path = sample_image(settings.image)
    image = cv2.imread(str(path))
    if image is None:
        raise FileNotFoundError(f"{path}: missing or not an image (part of scikit-learn)")
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)  # as the book's script converts its photo

    diffs: dict[str, int] = {}
    outputs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in settings.kernels:
        ours = to_uint8(convolve(gray, KERNELS[name]))
        theirs = to_uint8(opencv_convolve(gray, KERNELS[name]))
        diffs[name] = int(np.abs(ours.astype(np.int16) - theirs.astype(np.int16)).max())
        outputs[name] = (ours, theirs)
        with atomic_path(figures / f"{name}.png", suffix=".png") as tmp:
            if not cv2.imwrite(str(tmp), ours):
                raise OSError(f"{figures / name}.png: OpenCV could not write it")

    fig, axes = plt.subplots(
        len(outputs) + 1, 2, figsize=(6, 2.2 * (len(outputs) + 1)), squeeze=False
    )
    axes[0, 0].imshow(gray, cmap="gray", vmin=0, vmax=255)
    axes[0, 0].set_title(f"original ({settings.image}, gray)", fontsize=9)
    axes[0, 1].axis("off")
    for row, (name, (ours, theirs)) in enumerate(outputs.items(), start=1):
        axes[row, 0].imshow(ours, cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_title(f"{name}: convolve", fontsize=9)
        axes[row, 1].imshow(theirs, cmap="gray", vmin=0, vmax=255)
        axes[row, 1].set_title(f"{name}: cv2.filter2D (max diff {diffs[name]})", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    save_figure(fig, figures / "convolutions.png")

    overall = max(diffs.values())
    report = "\n".join(
        [
            f"image: {path.name}, {gray.shape[1]}x{gray.shape[0]} gray",
            "convolve (the kernel flipped, edges replicated) against cv2.filter2D with the "
            "flipped kernel and BORDER_REPLICATE; both rounded and clipped to uint8",
            *(
                f"  {name:<11} {'x'.join(map(str, KERNELS[name].shape)):>5}  "
                f"max |ours - OpenCV| = {diff}"
                for name, diff in diffs.items()
            ),
            f"overall max difference: {overall} grey level(s)",
        ]
    )
    return Outcome(
        metrics={
            "max_abs_diff": diffs,
            "max_abs_diff_overall": overall,
            "image_height": int(gray.shape[0]),
            "image_width": int(gray.shape[1]),
        },
        report=report + "\n",
    )

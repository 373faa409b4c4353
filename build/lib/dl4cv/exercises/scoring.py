"""Ch 8: scoring with f(x) = Wx + b, and the book's worked hinge and cross-entropy tables."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dl4cv.config import Exercise, LinearScoringSettings, LossesWorkedSettings, Params
from dl4cv.evaluation import plt
from dl4cv.exercises import Outcome, load_dataset, save_figure, setting_error
from dl4cv.nn.linear import LinearClassifier
from dl4cv.nn.losses import cross_entropy_losses, hinge_losses, softmax


def linear_scoring(exercise: Exercise, params: Params, figures: Path) -> Outcome:
    """Score one image of the dataset with the book's seeded random W and b (not trained)."""
    settings = exercise.settings
    assert isinstance(settings, LinearScoringSettings)
    data = load_dataset(exercise)
    if settings.image_class not in data.classes:
        raise setting_error(
            exercise,
            "settings.image_class",
            f"{settings.image_class!r} is not a class of {exercise.dataset} ({data.classes})",
        )
    label = data.classes.index(settings.image_class)
    members = np.flatnonzero(data.labels == label)
    if settings.image_index >= len(members):
        raise setting_error(
            exercise,
            "settings.image_index",
            f"{exercise.dataset} has {len(members)} {settings.image_class} images, "
            f"got index {settings.image_index}",
        )
    index = int(members[settings.image_index])
    image = data.images[index]
    # Raw 0-255 pixels, flattened, as the book scores its 32x32 dog: hence scores in thousands.
    x = image.reshape(-1).astype(np.float64)
    model = LinearClassifier(dim=x.size, classes=len(data.classes), seed=settings.seed)
    scores = model.scores(x)
    predicted = int(np.argmax(scores))

    fig, ax = plt.subplots(figsize=(4.5, 5))
    shown = image[..., 0] if image.shape[-1] == 1 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    ax.imshow(shown, cmap="gray" if image.shape[-1] == 1 else None, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"Label: {data.classes[predicted]}", fontsize=14)
    lines = [f"{name}: {score:.2f}" for name, score in zip(data.classes, scores, strict=True)]
    ax.set_xlabel("\n".join(lines))  # a label, not free text, so tight_layout keeps it in
    save_figure(fig, figures / "linear_scoring.png")

    report = "\n".join(
        [
            f"image: {exercise.dataset} {data.ids[index]} (class {settings.image_class}), "
            f"{image.shape[1]}x{image.shape[0]}x{image.shape[2]} -> {x.size} raw pixel values",
            f"W ({model.W.shape[0]}x{model.W.shape[1]}) and b drawn as np.random.seed"
            f"({settings.seed}); randn(W); randn(b) -- not trained",
            *(f"  {line}" for line in lines),
            f"predicted: {data.classes[predicted]} (true: {settings.image_class})",
            "The book's scores (dog 7963.93, cat -2930.99, panda 3362.47) belong to its own "
            "beagle photo and its row order dog/cat/panda; ours score an Animals image with "
            "the dataset's class order.",
        ]
    )
    return Outcome(
        metrics={
            "scores": {name: float(s) for name, s in zip(data.classes, scores, strict=True)},
            "predicted_index": predicted,
            "true_index": label,
            "correct": int(predicted == label),
        },
        report=report + "\n",
    )


def losses_worked(exercise: Exercise, params: Params, figures: Path) -> Outcome:
    """Recompute the book's multi-class hinge loss table and its softmax example."""
    settings = exercise.settings
    assert isinstance(settings, LossesWorkedSettings)
    classes = list(settings.classes)
    scores = np.array(settings.hinge_scores, dtype=np.float64)
    labels = np.array([classes.index(name) for name in settings.hinge_labels])
    per_image = hinge_losses(scores, labels, settings.delta)
    soft_scores = np.array(settings.softmax_scores, dtype=np.float64)
    true_class = classes.index(settings.softmax_label)
    probs = softmax(soft_scores)
    cross_entropy = float(cross_entropy_losses(soft_scores, [true_class])[0])

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
    names = [f"image {i + 1}\n({name})" for i, name in enumerate(settings.hinge_labels)]
    left.bar(names, per_image, color="tab:blue")
    left.axhline(per_image.mean(), color="k", linestyle="--", label=f"mean {per_image.mean():.2f}")
    left.set_title(f"multi-class hinge loss (delta {settings.delta:g})")
    left.legend()
    right.bar(
        classes,
        probs,
        color=["tab:green" if i == true_class else "tab:gray" for i in range(len(classes))],
    )
    right.set_ylim(0, 1)
    right.set_title(f"softmax (true class {settings.softmax_label}: {probs[true_class]:.2%})")
    save_figure(fig, figures / "losses.png")

    rows = [
        f"  image {i + 1} ({name}): scores "
        + ", ".join(f"{c} {s:.2f}" for c, s in zip(classes, row, strict=True))
        + f" -> hinge {loss:.2f}"
        for i, (name, row, loss) in enumerate(
            zip(settings.hinge_labels, scores, per_image, strict=True)
        )
    ]
    report = "\n".join(
        [
            f"Multi-class SVM hinge loss, delta {settings.delta:g}:",
            *rows,
            f"  mean over the images: {per_image.mean():.2f}",
            "",
            "Softmax of the scores "
            + ", ".join(f"{c} {s:.2f}" for c, s in zip(classes, soft_scores, strict=True))
            + ":",
            *(f"  P({c}) = {p:.4f}" for c, p in zip(classes, probs, strict=True)),
            f"  true class {settings.softmax_label}: {probs[true_class]:.2%}, "
            f"cross-entropy -ln p = {cross_entropy:.4f}",
        ]
    )
    return Outcome(
        metrics={
            "hinge": {f"image_{i + 1}": float(v) for i, v in enumerate(per_image)},
            "hinge_mean": float(per_image.mean()),
            "softmax": {c: float(p) for c, p in zip(classes, probs, strict=True)},
            "softmax_true_class_probability": float(probs[true_class]),
            "cross_entropy": cross_entropy,
        },
        report=report + "\n",
    )

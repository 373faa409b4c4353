"""Ch 9: gradient descent on two blobs, and the regularization comparison on Animals."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier

from dl4cv import evaluation
from dl4cv.config import Exercise, GradientDescentSettings, Params, RegularizationSettings
from dl4cv.data.splits import make_split
from dl4cv.exercises import Outcome, load_dataset, plot_decision_line, plot_series
from dl4cv.nn.gradient_descent import GradientDescent, StochasticGradientDescent


def gradient_descent(exercise: Exercise, params: Params, figures: Path) -> Outcome:
    """Train the sigmoid unit (full batch, or mini-batches when batch_size is set)."""
    settings = exercise.settings
    assert isinstance(settings, GradientDescentSettings)
    X, y = make_blobs(**dataclasses.asdict(settings.blobs))
    split = make_split(y, [""] * len(y), settings.split)
    if settings.batch_size is None:
        model = GradientDescent(settings.alpha, settings.epochs, seed=params.seed)
        how = "full batch"
    else:
        model = StochasticGradientDescent(
            settings.alpha,
            settings.epochs,
            settings.batch_size,
            shuffle=settings.shuffle,
            seed=params.seed,
        )
        how = f"mini-batches of {settings.batch_size}" + (", shuffled" if settings.shuffle else "")
    losses = model.fit(X[split.train], y[split.train])
    preds = model.predict(X[split.test])
    found = evaluation.classification_metrics(y[split.test], preds, ["0", "1"])
    assert model.W is not None

    title = f"{exercise.id}: {how}, alpha {settings.alpha:g}"
    plot_series(figures / "loss.png", {"loss": losses}, title, "squared-error loss")
    plot_decision_line(
        figures / "decision_boundary.png", X[split.test], y[split.test], model.W, title
    )
    report = "\n".join(
        [
            f"{len(split.train)} training / {len(split.test)} test points, {how}, "
            f"alpha {settings.alpha:g}, {settings.epochs} epochs",
            f"loss: epoch 1 {losses[0]:.4f} -> epoch {len(losses)} {losses[-1]:.4f}"
            + ("" if settings.batch_size is None else " (mean squared-error sum per batch)"),
            "W (w1, w2, bias): " + ", ".join(f"{w:.4f}" for w in model.W),
            "",
            evaluation.report_text(y[split.test], preds, ["0", "1"]),
        ]
    )
    return Outcome(
        metrics={
            "initial_loss": losses[0],
            "final_loss": losses[-1],
            "epochs": len(losses),
            "accuracy": found["accuracy"],
            "precision_weighted": found["precision_weighted"],
        },
        report=report,
        history={"loss": losses},
    )


def regularization(exercise: Exercise, params: Params, figures: Path) -> Outcome:
    """SGDClassifier on raw Animals pixels with one penalty, on the book's own 75/25 split."""
    settings = exercise.settings
    assert isinstance(settings, RegularizationSettings)
    data = load_dataset(exercise)
    # Unscaled 0-255 pixels, as the book feeds them; its own split (random_state 5), computed
    # here with the project's split code rather than read from the dataset's split file.
    X = data.images.reshape(len(data.images), -1).astype(np.float64)
    split = make_split(data.labels, data.origin, settings.split)
    model = SGDClassifier(
        loss=settings.loss,
        penalty=None if settings.penalty == "none" else settings.penalty,
        max_iter=settings.max_iter,
        learning_rate=settings.learning_rate,
        eta0=settings.eta0,
        tol=settings.tol,
        random_state=settings.random_state,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(X[split.train], data.labels[split.train])
    # With tol null there is no early stop, hence no warning; with a tol, say if it ran out.
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    preds = model.predict(X[split.test])
    y_test = data.labels[split.test]
    found = evaluation.classification_metrics(y_test, preds, data.classes)
    evaluation.plot_confusion_matrix(
        figures / "confusion_matrix.png",
        y_test,
        preds,
        data.classes,
        f"{exercise.id}: penalty {settings.penalty}",
    )
    report = "\n".join(
        [
            f"SGDClassifier(loss={settings.loss}, penalty={settings.penalty}, "
            f"max_iter={settings.max_iter}, learning_rate={settings.learning_rate}, "
            f"eta0={settings.eta0:g}, tol={settings.tol}, random_state={settings.random_state})",
            f"{exercise.dataset}: {len(split.train)} train / {len(split.test)} test images "
            f"({settings.split.method} split, random_state {settings.split.random_state}), "
            f"{X.shape[1]} raw pixel values each",
            f"{model.n_iter_} epochs"
            + ("" if converged else " (scikit-learn: stopped at max_iter, not converged)"),
            f"accuracy {found['accuracy']:.4f} (the book: none 50.13%, l1 52.67%, l2 57.20%)",
            "",
            evaluation.report_text(y_test, preds, data.classes),
        ]
    )
    return Outcome(
        metrics={
            "accuracy": found["accuracy"],
            "precision_weighted": found["precision_weighted"],
            "epochs": int(model.n_iter_),
            "train_size": len(split.train),
            "test_size": len(split.test),
        },
        report=report,
    )

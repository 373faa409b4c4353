"""Ch 10: the perceptron on the truth tables, and the backpropagation network on XOR and digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dl4cv import evaluation
from dl4cv.config import Exercise, NeuralNetworkSettings, Params, PerceptronSettings
from dl4cv.exercises import (
    BITS,
    TRUTH_TABLES,
    Outcome,
    bit_key,
    load_dataset,
    plot_decision_line,
    plot_series,
    setting_error,
    shared_split,
)
from dl4cv.nn.neuralnetwork import NeuralNetwork
from dl4cv.nn.perceptron import Perceptron

PROGRESS_LINES = 10  # loss lines printed during a long training


def perceptron(exercise: Exercise, params: Params, figures: Path) -> Outcome:
    """Train the perceptron on OR, AND or XOR and say whether it learned all four rows."""
    settings = exercise.settings
    assert isinstance(settings, PerceptronSettings)
    y = TRUTH_TABLES[settings.table]
    model = Perceptron(n_inputs=2, alpha=settings.alpha, seed=params.seed)
    mistakes = model.fit(BITS, y, epochs=settings.epochs)
    preds = model.predict(BITS)
    correct = int(np.sum(preds == y))
    plot_decision_line(
        figures / "decision_boundary.png",
        BITS,
        y,
        model.W,
        f"perceptron, {settings.table.upper()}: {correct}/4 correct",
    )
    plot_series(figures / "mistakes.png", {"mistakes": mistakes}, exercise.id, "mistakes")
    report = "\n".join(
        [
            f"{settings.table.upper()}, alpha {settings.alpha:g}, {settings.epochs} epochs "
            f"(mistakes in the last epoch: {mistakes[-1]})",
            *(
                f"  data={row.astype(int).tolist()}, ground-truth={t}, pred={p}"
                for row, t, p in zip(BITS, y, preds, strict=True)
            ),
            f"{correct}/4 correct: " + ("learned" if correct == 4 else "not learned"),
        ]
    )
    return Outcome(
        metrics={
            "learned": int(correct == 4),
            "correct": correct,
            "predictions": {bit_key(r): int(p) for r, p in zip(BITS, preds, strict=True)},
            "final_mistakes": mistakes[-1],
        },
        report=report + "\n",
        history={"mistakes": [float(m) for m in mistakes]},
    )


def neural_network(exercise: Exercise, params: Params, figures: Path) -> Outcome:
    """Train the from-scratch network on a truth table or on a dataset's shared split."""
    settings = exercise.settings
    assert isinstance(settings, NeuralNetworkSettings)
    if settings.table is not None:
        return _truth_table(exercise, settings, params.seed, figures)
    return _dataset(exercise, settings, params.seed, figures)


def _train(
    exercise: Exercise,
    key: str,
    layers: tuple[int, ...],
    settings: NeuralNetworkSettings,
    seed: int,
    X: np.ndarray,
    Y: np.ndarray,
) -> tuple[NeuralNetwork, list[float]]:
    if layers[0] != X.shape[1] or layers[-1] != Y.shape[1]:
        raise setting_error(
            exercise,
            f"settings.{key}",
            f"the data needs {X.shape[1]} inputs and {Y.shape[1]} outputs, got {list(layers)}",
        )
    model = NeuralNetwork(list(layers), alpha=settings.alpha, seed=seed)
    print(f"[INFO] training {model} on {len(X)} examples")  # the book's line
    losses = model.fit(
        X,
        Y,
        epochs=settings.epochs,
        display_update=max(1, settings.epochs // PROGRESS_LINES),
        batch_size=settings.batch_size,
    )
    return model, losses


def _truth_table(
    exercise: Exercise, settings: NeuralNetworkSettings, seed: int, figures: Path
) -> Outcome:
    assert settings.table is not None
    y = TRUTH_TABLES[settings.table]
    Y = y.reshape(-1, 1).astype(np.float64)
    nets = {"": settings.layers}
    if settings.baseline_layers is not None:
        nets["baseline_"] = settings.baseline_layers
    metrics: dict = {}
    history: dict[str, list[float]] = {}
    lines = [
        f"{settings.table.upper()}, alpha {settings.alpha:g}, {settings.epochs} epochs, "
        f"batch size {settings.batch_size}"
    ]
    for prefix, layers in nets.items():
        model, losses = _train(exercise, f"{prefix}layers", layers, settings, seed, BITS, Y.copy())
        outputs = model.predict(BITS)[:, 0]
        preds = model.classify(BITS)
        correct = int(np.sum(preds == y))
        metrics |= {
            f"{prefix}learned": int(correct == 4),
            f"{prefix}correct": correct,
            f"{prefix}initial_loss": losses[0],
            f"{prefix}final_loss": losses[-1],
            f"{prefix}predictions": {bit_key(r): int(p) for r, p in zip(BITS, preds, strict=True)},
            f"{prefix}outputs": {bit_key(r): float(o) for r, o in zip(BITS, outputs, strict=True)},
        }
        history[f"{prefix}loss"] = losses
        lines += [
            "",
            f"{model}: loss epoch 1 {losses[0]:.7f} -> epoch {len(losses)} {losses[-1]:.7f}",
            *(
                f"  data={row.astype(int).tolist()}, ground-truth={t}, pred={o:.4f}, step={p}"
                for row, t, o, p in zip(BITS, y, outputs, preds, strict=True)
            ),
            f"{correct}/4 correct: " + ("learned" if correct == 4 else "not learned"),
        ]
    plot_series(figures / "loss.png", history, exercise.id, "loss (0.5 sum of squared errors)")
    return Outcome(
        metrics=metrics,
        report="\n".join(lines) + "\n",
        history=history,
        tags={"engine": str(model.engine)},
    )


def _dataset(
    exercise: Exercise, settings: NeuralNetworkSettings, seed: int, figures: Path
) -> Outcome:
    assert exercise.dataset is not None
    data = load_dataset(exercise)
    split = shared_split(exercise.dataset)
    X = data.images.reshape(len(data.images), -1).astype(np.float64)
    X = (X - X.min()) / max(X.max() - X.min(), 1e-12)  # the book's min-max scaling to [0, 1]
    Y = np.eye(len(data.classes))[data.labels]  # one-hot, as LabelBinarizer
    model, losses = _train(
        exercise, "layers", settings.layers, settings, seed, X[split.train], Y[split.train]
    )
    y_test = data.labels[split.test]
    preds = model.classify(X[split.test])
    found = evaluation.classification_metrics(y_test, preds, data.classes)
    plot_series(figures / "loss.png", {"loss": losses}, exercise.id, "loss")
    evaluation.plot_confusion_matrix(
        figures / "confusion_matrix.png", y_test, preds, data.classes, f"{exercise.id}: {model}"
    )
    report = "\n".join(
        [
            f"{model} on {exercise.dataset}: {len(split.train)} train / {len(split.test)} test, "
            f"alpha {settings.alpha:g}, {settings.epochs} epochs, batch size {settings.batch_size}",
            f"loss: epoch 1 {losses[0]:.4f} -> epoch {len(losses)} {losses[-1]:.4f}",
            "",
            evaluation.report_text(y_test, preds, data.classes),
        ]
    )
    return Outcome(
        metrics={
            "accuracy": found["accuracy"],
            "precision_weighted": found["precision_weighted"],
            "initial_loss": losses[0],
            "final_loss": losses[-1],
            "epochs": len(losses),
        },
        report=report,
        history={"loss": losses},
        tags={"engine": str(model.engine)},
    )

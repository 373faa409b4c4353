"""Ch 19: the architecture diagram of one of the book's networks (the book draws LeNet)."""

from __future__ import annotations

from pathlib import Path

from dl4cv.config import Exercise, Params, VisualizeSettings
from dl4cv.exercises import Outcome


def visualize(exercise: Exercise, params: Params, figures: Path) -> Outcome:
    """Build the network and draw it; say which renderer drew it (graphviz or matplotlib)."""
    # Keras is loaded here, not at import time: the other exercises never need it.
    from dl4cv.nn.conv import LeNet, MiniVGGNet, ShallowNet
    from dl4cv.nn.visualize import layer_rows, plot_architecture

    settings = exercise.settings
    assert isinstance(settings, VisualizeSettings)
    builders = {"lenet": LeNet, "shallownet": ShallowNet, "minivggnet": MiniVGGNet}
    model = builders[settings.model].build(
        settings.width, settings.height, settings.depth, settings.classes
    )
    renderer = plot_architecture(model, figures / f"{settings.model}.png", settings.renderer)
    rows = layer_rows(model)
    report = "\n".join(
        [
            f"{model.name}: input {settings.height}x{settings.width}x{settings.depth}, "
            f"{settings.classes} classes, {model.count_params():,} parameters",
            f"renderer: {renderer}"
            + (
                " (the fallback: graphviz `dot` or pydot is not installed)"
                if renderer == "matplotlib" and settings.renderer == "auto"
                else ""
            ),
            "",
            f"{'layer':<24}{'type':<20}{'output shape':<22}{'params':>10}",
            *(f"{n:<24}{k:<20}{s:<22}{p:>10,}" for n, k, s, p in rows),
        ]
    )
    return Outcome(
        metrics={"parameters": int(model.count_params()), "layers": len(rows)},
        report=report + "\n",
        tags={"renderer": renderer},
    )

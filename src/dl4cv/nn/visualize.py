"""Ch 19: an architecture diagram PNG of a Keras model, with or without graphviz.

`keras.utils.plot_model` needs the pydot package *and* the graphviz `dot` program, a system
package that a bare CI machine or a fresh GPU host often lacks. Rather than fail the stage,
`plot_architecture` then draws its own diagram with matplotlib (one box per layer: name, type,
output shape, parameters) and returns which renderer produced the file, so the report can say.
The matplotlib diagram stacks layers in `model.layers` order: exact for Sequential models such
as LeNet; a branching model is drawn as its topological order, without the branches.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Literal

import keras
import numpy as np

from dl4cv.runtime.fileio import atomic_path

Renderer = Literal["graphviz", "matplotlib"]

BOX_INCHES = 0.75  # vertical space of one layer's box in the matplotlib diagram


def graphviz_available() -> bool:
    """Both halves of plot_model's requirement: the pydot package and the `dot` program."""
    return importlib.util.find_spec("pydot") is not None and shutil.which("dot") is not None


def plot_architecture(
    model: keras.Model, path: Path | str, renderer: Renderer | Literal["auto"] = "auto"
) -> Renderer:
    """Write the diagram PNG to `path`; "auto" prefers graphviz and falls back to matplotlib."""
    if renderer not in ("auto", "graphviz", "matplotlib"):
        raise ValueError(f"unknown renderer {renderer!r}: auto, graphviz or matplotlib")
    path = Path(path)
    if renderer == "graphviz" or (renderer == "auto" and graphviz_available()):
        try:
            _plot_graphviz(model, path)
            return "graphviz"
        except (ImportError, OSError, RuntimeError) as error:
            if renderer == "graphviz":
                raise RuntimeError(f"graphviz could not draw {model.name}: {error}") from error
    _plot_matplotlib(model, path)
    return "matplotlib"


def layer_rows(model: keras.Model) -> list[tuple[str, str, str, int]]:
    """(name, type, output shape, parameters) per layer, inputs first."""
    if not model.built:
        raise ValueError(f"model {model.name} is not built: give it an Input or call it once")
    rows = []
    if not any(isinstance(layer, keras.layers.InputLayer) for layer in model.layers):
        for tensor in model.inputs:  # Sequential models keep their Input outside .layers
            rows.append(("input", "InputLayer", _shape(tensor.shape), 0))
    for layer in model.layers:
        try:
            shape = _shape(layer.output.shape)
        except (AttributeError, ValueError):  # a layer used at several places has no one shape
            shape = "?"
        rows.append((layer.name, type(layer).__name__, shape, int(layer.count_params())))
    return rows


def _shape(shape: tuple) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _plot_graphviz(model: keras.Model, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        keras.utils.plot_model(
            model, to_file=str(tmp), show_shapes=True, show_layer_names=True, dpi=96
        )
        # In IPython, plot_model only prints a message when dot is missing: no silent empty file.
        if tmp.stat().st_size == 0:
            raise RuntimeError("plot_model wrote nothing")


def _plot_matplotlib(model: keras.Model, path: Path) -> None:
    from dl4cv.evaluation import plt  # imported there with the Agg backend (no display)

    rows = layer_rows(model)
    height = 0.6 + BOX_INCHES * len(rows)
    fig, ax = plt.subplots(figsize=(6.5, height))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, height)
    ax.axis("off")
    colours = plt.get_cmap("tab10")
    kinds = list(dict.fromkeys(kind for _, kind, _, _ in rows))
    box_h = BOX_INCHES * 0.7
    for i, (name, kind, shape, params) in enumerate(rows):
        top = height - 0.3 - i * BOX_INCHES
        colour = colours(kinds.index(kind) % 10)
        ax.add_patch(
            plt.Rectangle(
                (0.08, top - box_h),
                0.84,
                box_h,
                facecolor=(*colour[:3], 0.25),
                edgecolor=colour,
                linewidth=1.2,
            )
        )
        ax.text(
            0.5,
            top - box_h * 0.32,
            f"{name}  ({kind})",
            ha="center",
            va="center",
            fontsize=9,
            weight="bold",
        )
        ax.text(
            0.5,
            top - box_h * 0.72,
            f"output {shape}   params {params:,}",
            ha="center",
            va="center",
            fontsize=8,
            family="monospace",
        )
        if i + 1 < len(rows):
            ax.annotate(
                "",
                xy=(0.5, top - BOX_INCHES),
                xytext=(0.5, top - box_h),
                arrowprops={"arrowstyle": "->", "lw": 1.0},
            )
    total = int(np.sum([p for *_, p in rows]))
    ax.set_title(f"{model.name}: {total:,} parameters", fontsize=10)
    # No tight_layout or bbox="tight": the image height stays proportional to the layer count.
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1 - 0.35 / height)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)

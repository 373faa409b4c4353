"""Ch 19: the architecture diagram, drawn by graphviz when present, else by matplotlib."""

from __future__ import annotations

import shutil

import cv2
import keras
import pytest

from dl4cv.nn.conv import LeNet
from dl4cv.nn.mlp import MLP
from dl4cv.nn.visualize import graphviz_available, layer_rows, plot_architecture


def test_matplotlib_diagram_of_lenet_grows_with_the_layers(tmp_path):
    lenet = LeNet.build(28, 28, 1, 10)
    mlp = MLP.build((28, 28, 1), 10)
    heights = {}
    for model in (lenet, mlp):
        path = tmp_path / f"{model.name}.png"
        assert plot_architecture(model, path, renderer="matplotlib") == "matplotlib"
        image = cv2.imread(str(path))
        assert image is not None and image.shape[1] == 650
        heights[model.name] = image.shape[0]
    # LeNet: input + 11 layers; the MLP: input + Flatten + 3 Dense. Same pixels per box.
    assert len(layer_rows(lenet)) == 12 and len(layer_rows(mlp)) == 5
    per_box = (heights["lenet"] - heights["mlp"]) / (12 - 5)
    assert per_box == pytest.approx(75, abs=1)  # 0.75 inch at 100 dpi
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.png", "mlp.png"]


def test_layer_rows_of_lenet():
    lenet = LeNet.build(28, 28, 1, 10)
    rows = layer_rows(lenet)
    assert rows[0] == ("input", "InputLayer", "(None, 28, 28, 1)", 0)
    assert rows[1][1:] == ("Conv2D", "(None, 28, 28, 20)", 5 * 5 * 1 * 20 + 20)
    assert rows[-1][1:3] == ("Activation", "(None, 10)")
    assert ("Flatten", "(None, 2450)") in [r[1:3] for r in rows]  # 7 * 7 * 50
    assert sum(r[3] for r in rows) == lenet.count_params()


def test_auto_reports_the_renderer_it_used(tmp_path):
    expected = "graphviz" if graphviz_available() else "matplotlib"
    assert graphviz_available() == (shutil.which("dot") is not None and _has_pydot())
    path = tmp_path / "lenet.png"
    assert plot_architecture(LeNet.build(28, 28, 1, 10), path) == expected
    assert cv2.imread(str(path)) is not None


@pytest.mark.skipif(graphviz_available(), reason="graphviz is installed here")
def test_forcing_graphviz_without_dot_says_so(tmp_path):
    with pytest.raises(RuntimeError, match="graphviz"):
        plot_architecture(LeNet.build(28, 28, 1, 10), tmp_path / "x.png", renderer="graphviz")
    assert list(tmp_path.iterdir()) == []


def test_unbuilt_model_and_unknown_renderer(tmp_path):
    unbuilt = keras.Sequential([keras.layers.Dense(3)], name="unbuilt")
    with pytest.raises(ValueError, match="not built"):
        plot_architecture(unbuilt, tmp_path / "x.png", renderer="matplotlib")
    with pytest.raises(ValueError, match="renderer"):
        plot_architecture(LeNet.build(28, 28, 1, 10), tmp_path / "x.png", renderer="svg")


def _has_pydot() -> bool:
    try:
        import pydot  # noqa: F401
    except ImportError:
        return False
    return True

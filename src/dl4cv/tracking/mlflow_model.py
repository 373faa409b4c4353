"""A trained model as an MLflow Model of the open run (`runs:/<run id>/model`): its flavor,
a signature and a few test images as input example, so the UI lists it and `mlflow models
predict` or the Model Registry take it. Only train imports this module (mlflow.keras loads
Keras).

The pip requirements are given, not inferred: MLflow infers them by loading the model in a
child interpreter, seconds per training.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dl4cv import tracking
from dl4cv.tracking.run_record import MODEL

# The distributions a module comes from where the names differ, most likely first.
DISTRIBUTIONS = {
    "sklearn": ("scikit-learn",),
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
}

if TYPE_CHECKING:
    import keras
    from sklearn.neighbors import KNeighborsClassifier


def log_keras(model: keras.Model, examples: np.ndarray, outputs: np.ndarray) -> None:
    """`examples`: images as the network takes them (float32 pixels in [0, 1]); `outputs`: what
    it predicts for them (from the test-set predictions: no second predict to compile)."""
    import keras
    import mlflow.keras

    _log(
        mlflow.keras,
        examples,
        outputs,
        _requirements("keras", keras.backend.backend(), "numpy"),
        model=model,
    )


def log_knn(model: KNeighborsClassifier, examples: np.ndarray, outputs: np.ndarray) -> None:
    """`examples`: raw pixels, one flattened image per row, as the k-NN takes them; `outputs`:
    its labels for them."""
    import mlflow.sklearn

    # skops: the format MLflow saves scikit-learn models in
    _log(
        mlflow.sklearn,
        examples,
        outputs,
        _requirements("sklearn", "skops", "numpy"),
        sk_model=model,
    )


def _log(
    flavor: Any, examples: np.ndarray, outputs: np.ndarray, requirements: list[str], **model: Any
) -> None:
    """Save the model in `flavor` (mlflow.keras, mlflow.sklearn) as `MODEL` of the open run.

    Its input example is not checked by loading the saved model and predicting with it
    (seconds per training, a compile on a GPU): tests/test_mlflow_models.py checks that once
    with the real `mlflow models predict`."""
    from mlflow.models import infer_signature

    def save(path: Path) -> None:
        flavor.save_model(
            path=str(path),
            signature=infer_signature(examples, outputs),
            input_example=examples,
            pip_requirements=requirements,
            **model,
        )

    tracking.log_model(MODEL, flavor.__name__, save)


def _requirements(*modules: str) -> list[str]:
    """`dist==version` of mlflow and of the installed distribution of each module: looked up
    by name (importlib.metadata.packages_distributions reads every installed package's
    metadata, seconds where CUDA wheels are installed)."""
    dists = ["mlflow"]
    for module in modules:
        for dist in DISTRIBUTIONS.get(module, (module,)):
            try:
                version(dist)
            except PackageNotFoundError:
                continue
            dists.append(dist)
            break
    return [f"{dist}=={version(dist)}" for dist in dists]

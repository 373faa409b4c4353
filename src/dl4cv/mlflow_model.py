"""A trained model as an MLflow Model of the active run (`runs:/<run id>/model`): its flavor,
a signature and a few test images as input example, so the UI lists it and `mlflow models
predict` or the Model Registry take it. Only train imports this module (mlflow.keras loads
Keras).

The pip requirements are given, not inferred: MLflow infers them by loading the model in a
child interpreter, seconds per training.
"""

from __future__ import annotations

import os
from importlib.metadata import packages_distributions, version
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from dl4cv.run_record import MODEL

if TYPE_CHECKING:
    import keras
    from sklearn.neighbors import KNeighborsClassifier


def log_keras(model: keras.Model, examples: np.ndarray) -> None:
    """`examples`: images as the network takes them (float32 pixels in [0, 1])."""
    import keras
    import mlflow.keras
    from mlflow.models import Model, infer_signature

    def save_model(path: str, **kwargs: Any) -> None:
        # mlflow.keras.save_model writes the input example before it makes the model's folder
        # (MLflow issue 16183, open in 3.17): make it first.
        os.makedirs(path, exist_ok=True)
        mlflow.keras.save_model(path=path, **kwargs)

    Model.log(
        artifact_path=None,  # deprecated for `name`, yet without a default
        name=MODEL,
        flavor=SimpleNamespace(__name__="mlflow.keras", save_model=save_model),
        model=model,
        signature=infer_signature(examples, model.predict(examples, verbose=0)),
        input_example=examples,
        pip_requirements=_requirements("keras", keras.backend.backend(), "numpy"),
    )


def log_knn(model: KNeighborsClassifier, examples: np.ndarray) -> None:
    """`examples`: raw pixels, one flattened image per row, as the k-NN takes them."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    mlflow.sklearn.log_model(
        model,
        name=MODEL,
        signature=infer_signature(examples, model.predict(examples)),
        input_example=examples,
        pip_requirements=_requirements("sklearn", "skops", "numpy"),  # skops: MLflow's format
    )


def _requirements(*modules: str) -> list[str]:
    """`dist==version` of the installed distribution of each module (tensorflow may be
    tensorflow-cpu, sklearn is scikit-learn), and of mlflow."""
    found = packages_distributions()
    dists = ["mlflow", *(found[module][0] for module in modules)]
    return [f"{dist}=={version(dist)}" for dist in dists]

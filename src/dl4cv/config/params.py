"""The whole of params.yaml, and the checks that span its sections (an experiment's dataset
is declared, a prediction's experiment is a Keras one, ...)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dl4cv.config.base import ConfigError, Seed, keyed, spec
from dl4cv.config.captcha import CAPTCHA, Captcha
from dl4cv.config.datasets import Dataset, Preprocess
from dl4cv.config.detect import Detect
from dl4cv.config.exercises import Exercise
from dl4cv.config.experiments import Experiment, Prediction
from dl4cv.config.imagenet import ImageNet


@spec
class MLflowSettings:
    # Experiments whose model the evaluate stage puts in the MLflow Model Registry, each under
    # its experiment id (a new version per training run).
    register: tuple[str, ...] = ()


@spec
class Params:
    profile: Literal["book", "quick"]
    seed: Seed
    preprocess: Preprocess
    datasets: keyed(Dataset)
    experiments: keyed(Experiment)
    predictions: keyed(Prediction) = Field(default_factory=dict)
    captcha: Captcha | None = None  # ch 21; its digit crops are the dataset `captcha`
    exercises: keyed(Exercise) = Field(default_factory=dict)  # ch 8-11, 19
    imagenet: ImageNet = ImageNet()  # ch 20
    detect: Detect = Detect()  # ch 22: faces + smile classifier on a video
    mlflow: MLflowSettings = MLflowSettings()

    def dataset(self, name: str) -> Dataset:
        if name == CAPTCHA and self.captcha is not None:
            return self.captcha.dataset()
        if name not in self.datasets:
            raise ConfigError(
                f"unknown dataset {name!r}; params.yaml declares {self.dataset_names()}"
            )
        return self.datasets[name]

    def dataset_names(self) -> list[str]:
        return sorted(set(self.datasets) | ({CAPTCHA} if self.captcha else set()))

    def experiment(self, exp_id: str) -> Experiment:
        if exp_id not in self.experiments:
            raise ConfigError(
                f"unknown experiment {exp_id!r}; params.yaml declares {sorted(self.experiments)}"
            )
        return self.experiments[exp_id]

    def exercise(self, exercise_id: str) -> Exercise:
        if exercise_id not in self.exercises:
            raise ConfigError(
                f"unknown exercise {exercise_id!r}; params.yaml declares {sorted(self.exercises)}"
            )
        return self.exercises[exercise_id]


def check_references(params: Params, source: str) -> None:
    """Names that point to another section point to something declared there."""
    declared = params.dataset_names()
    for exp in params.experiments.values():
        if exp.dataset not in declared:
            raise ConfigError(
                f"{source}: experiments.{exp.id}.dataset: {exp.dataset!r} is not one of the "
                f"declared datasets {declared}"
            )
    _check_captcha(params, source)
    for exp_id in params.mlflow.register:
        if exp_id not in params.experiments:
            raise ConfigError(
                f"{source}: mlflow.register: {exp_id!r} is not one of the declared experiments "
                f"{sorted(params.experiments)}"
            )
    for ex in params.exercises.values():
        if ex.dataset is not None and ex.dataset not in declared:
            raise ConfigError(
                f"{source}: exercises.{ex.id}.dataset: {ex.dataset!r} is not one of the "
                f"declared datasets {declared}"
            )
    for pred in params.predictions.values():
        exp = params.experiments.get(pred.experiment)
        if exp is None or not exp.is_keras:
            keras_ids = sorted(e.id for e in params.experiments.values() if e.is_keras)
            raise ConfigError(
                f"{source}: predictions.{pred.id}.experiment: {pred.experiment!r} is not one of "
                f"the Keras experiments {keras_ids}"
            )
        if pred.dataset != exp.dataset:
            raise ConfigError(
                f"{source}: predictions.{pred.id}.dataset: expected {exp.dataset!r}, the "
                f"dataset of experiment {exp.id!r}, got {pred.dataset!r}"
            )


def _check_captcha(params: Params, source: str) -> None:
    for name, dataset in params.datasets.items():
        if name == CAPTCHA or dataset.source.format == "captcha":
            raise ConfigError(
                f"{source}: datasets.{name}: the captcha dataset is declared by the top-level "
                "captcha: section, not under datasets"
            )
    if params.captcha is None:
        return
    solved = params.captcha.solve.experiment
    exp = params.experiments.get(solved)
    if exp is None or exp.dataset != CAPTCHA:
        raise ConfigError(
            f"{source}: captcha.solve.experiment: {solved!r} is not an experiment on the "
            f"captcha dataset"
        )

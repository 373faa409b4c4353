"""params.yaml -> typed, validated settings (pydantic), checked before any work starts.

An unknown key, a missing key or a wrong type fails with the full key path and what was
expected, so a typo in `dvc exp run -S ...` never costs a training run. One module per
section of params.yaml; `loading` reads the file and applies the profile.
"""

from dl4cv.config.base import MAX_SIDE, PARAMS_FILE, SEED_MAX, ConfigError
from dl4cv.config.captcha import (
    CAPTCHA,
    Captcha,
    CaptchaAnnotate,
    CaptchaSegment,
    CaptchaSolve,
    CaptchaSource,
)
from dl4cv.config.datasets import (
    IMAGE_ZIPS,
    Dataset,
    ImageSpec,
    Preprocess,
    Source,
    SplitSpec,
    Subset,
)
from dl4cv.config.detect import WEBCAM, Cascade, DemoVideo, Detect
from dl4cv.config.exercises import (
    EXERCISE_DATASET,
    EXERCISE_SETTINGS,
    BlobsSpec,
    ConvolutionsSettings,
    Exercise,
    GradientDescentSettings,
    LinearScoringSettings,
    LossesWorkedSettings,
    NeuralNetworkSettings,
    PerceptronSettings,
    RegularizationSettings,
    VisualizeSettings,
)
from dl4cv.config.experiments import (
    EvaluateSpec,
    Experiment,
    ModelSpec,
    OptimizerSpec,
    Prediction,
    TrainSpec,
)
from dl4cv.config.imagenet import ImageNet
from dl4cv.config.loading import build, load_params, parse_params
from dl4cv.config.params import MLflowSettings, Params

__all__ = [
    "CAPTCHA",
    "EXERCISE_DATASET",
    "EXERCISE_SETTINGS",
    "IMAGE_ZIPS",
    "MAX_SIDE",
    "PARAMS_FILE",
    "SEED_MAX",
    "WEBCAM",
    "BlobsSpec",
    "Captcha",
    "CaptchaAnnotate",
    "CaptchaSegment",
    "CaptchaSolve",
    "CaptchaSource",
    "Cascade",
    "ConfigError",
    "ConvolutionsSettings",
    "Dataset",
    "DemoVideo",
    "Detect",
    "EvaluateSpec",
    "Exercise",
    "Experiment",
    "GradientDescentSettings",
    "ImageNet",
    "ImageSpec",
    "LinearScoringSettings",
    "LossesWorkedSettings",
    "MLflowSettings",
    "ModelSpec",
    "NeuralNetworkSettings",
    "OptimizerSpec",
    "Params",
    "PerceptronSettings",
    "Prediction",
    "Preprocess",
    "RegularizationSettings",
    "Source",
    "SplitSpec",
    "Subset",
    "TrainSpec",
    "VisualizeSettings",
    "build",
    "load_params",
    "parse_params",
]

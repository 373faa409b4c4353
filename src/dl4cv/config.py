"""params.yaml -> typed, validated settings.

This is the only module that reads params.yaml. Everything is checked before any work starts:
an unknown key, a missing key or a wrong type fails with the full key path and what was
expected, so a typo in `dvc exp run -S ...` never costs a training run.

Each dataset and experiment may carry a `quick:` block: overrides merged in (deeply) when
`profile: quick` is selected, so both profiles live side by side in one file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

PARAMS_FILE = "params.yaml"


class ConfigError(ValueError):
    """params.yaml does not describe a valid pipeline."""


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from; `format` tells the preprocess stage how to read it."""

    format: Literal[
        "keras-npz", "cifar10-python", "image-folder-zip", "smiles-github-zip", "sklearn-digits"
    ]
    url: str | None = None
    sha256: str | None = None
    filename: str | None = None
    root: str | None = None
    splits: dict[str, str] | None = None
    classes: dict[str, str] | None = None


@dataclass(frozen=True)
class ImageSpec:
    width: int
    height: int
    channels: Literal[1, 3]


@dataclass(frozen=True)
class SplitSpec:
    """`official` keeps the dataset's own train/test split; the others split with a seed."""

    method: Literal["stratified", "random", "official"]
    test_size: float = 0.25
    val_size: float = 0.0
    random_state: int = 42

    def __post_init__(self) -> None:
        if not 0 < self.test_size < 1:
            raise ConfigError(f"test_size: expected a fraction in (0, 1), got {self.test_size}")
        if not 0 <= self.val_size < 1:
            raise ConfigError(f"val_size: expected a fraction in [0, 1), got {self.val_size}")


@dataclass(frozen=True)
class Subset:
    """Caps on split sizes (stratified subsample), used by the quick profile."""

    max_train: int | None = None
    max_test: int | None = None


@dataclass(frozen=True)
class Dataset:
    name: str = field(metadata={"from_key": True})
    source: Source
    image: ImageSpec
    split: SplitSpec
    subset: Subset = Subset()


@dataclass(frozen=True)
class Preprocess:
    interpolation: Literal["area", "linear", "cubic", "nearest"] = "area"
    # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is that much smaller.
    fast_decode: bool = True
    workers: int = 0  # 0: one per CPU core


@dataclass(frozen=True)
class ModelSpec:
    name: Literal["knn", "shallownet", "lenet", "minivggnet", "mlp"]
    batch_norm: bool = True  # minivggnet
    hidden: tuple[int, ...] = (256, 128)  # mlp: hidden layer sizes
    activation: Literal["sigmoid", "relu"] = "sigmoid"  # mlp: hidden activation
    n_neighbors: int = 1
    metric: Literal["euclidean", "manhattan"] = "euclidean"


@dataclass(frozen=True)
class OptimizerSpec:
    name: Literal["sgd", "adam"] = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    # Keras 2 time-based decay: lr_t = lr0 / (1 + decay * t), t in optimizer steps.
    decay: float = 0.0
    # The book's ch 16 step decay: lr = lr0 * step_factor ** floor((1 + epoch) / step_every).
    step_factor: float | None = None
    step_every: int = 5

    def __post_init__(self) -> None:
        if self.step_factor is not None:
            if self.decay:
                raise ConfigError("step_factor: use either decay (per step) or step_factor")
            if not 0 < self.step_factor <= 1 or self.step_every < 1:
                raise ConfigError(
                    "step_factor/step_every: expected 0 < step_factor <= 1 and step_every >= 1, "
                    f"got {self.step_factor} and {self.step_every}"
                )


@dataclass(frozen=True)
class TrainSpec:
    batch_size: int = 32
    epochs: int = 10
    monitor: Literal["val_loss", "val_accuracy", "loss", "accuracy"] = "val_loss"
    steps_per_execution: int = 1  # keras runner only
    jit_compile: Literal["auto"] | bool = "auto"  # keras runner only (scan always compiles)
    # keras: model.fit. scan: one jitted lax.scan per epoch, data kept on the device
    # (dl4cv.training.jax_epochs; needs KERAS_BACKEND=jax, checked when training starts).
    runner: Literal["keras", "scan"] = "keras"
    # Keras dtype policy of the model's layers (mixed_bfloat16: bfloat16 compute, float32 weights).
    dtype_policy: Literal["float32", "mixed_bfloat16"] = "float32"
    # Save the resume state at most every N seconds (and always after the last epoch); 0: every
    # epoch. A kill then loses up to N seconds of training.
    checkpoint_interval_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("batch_size", "epochs", "steps_per_execution"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")
        if not self.checkpoint_interval_s >= 0:
            raise ConfigError(
                f"checkpoint_interval_s: expected a number >= 0, got {self.checkpoint_interval_s}"
            )


@dataclass(frozen=True)
class EvaluateSpec:
    # The book reports the model as it stands after the last epoch; `best` uses the checkpoint.
    checkpoint: Literal["final", "best"] = "final"


@dataclass(frozen=True)
class Experiment:
    id: str = field(metadata={"from_key": True})
    chapter: int
    dataset: str
    model: ModelSpec
    optimizer: OptimizerSpec = OptimizerSpec()
    train: TrainSpec = TrainSpec()
    evaluate: EvaluateSpec = EvaluateSpec()

    @property
    def is_keras(self) -> bool:
        return self.model.name != "knn"


@dataclass(frozen=True)
class Params:
    profile: Literal["book", "quick"]
    seed: int
    preprocess: Preprocess
    datasets: dict[str, Dataset]
    experiments: dict[str, Experiment]

    def dataset(self, name: str) -> Dataset:
        if name not in self.datasets:
            raise ConfigError(
                f"unknown dataset {name!r}; params.yaml declares {sorted(self.datasets)}"
            )
        return self.datasets[name]

    def experiment(self, exp_id: str) -> Experiment:
        if exp_id not in self.experiments:
            raise ConfigError(
                f"unknown experiment {exp_id!r}; params.yaml declares {sorted(self.experiments)}"
            )
        return self.experiments[exp_id]


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (run from the repository root)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(raw, source=str(path))


def parse_params(raw: Any, source: str = PARAMS_FILE) -> Params:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    profile = raw.get("profile", "book")
    # Build both profiles, so a typo in a `quick:` block fails under `profile: book` too.
    for other in {"book", "quick"} - {profile}:
        _build_profile(raw, other, source)
    params = _build_profile(raw, profile, source)
    for exp in params.experiments.values():
        if exp.dataset not in params.datasets:
            raise ConfigError(
                f"{source}: experiments.{exp.id}.dataset: {exp.dataset!r} is not one of the "
                f"declared datasets {sorted(params.datasets)}"
            )
    return params


def _build_profile(raw: dict, profile: Any, source: str) -> Params:
    raw = {
        **raw,
        "datasets": _apply_profile(raw.get("datasets"), profile, "datasets"),
        "experiments": _apply_profile(raw.get("experiments"), profile, "experiments"),
    }
    try:
        return _build(Params, raw, "")
    except ConfigError as exc:
        where = (
            f" (with profile {profile} applied)" if profile != raw.get("profile", "book") else ""
        )
        raise ConfigError(f"{source}{where}: {exc}") from None


def build(cls: type, data: Any, where: str) -> Any:
    """Validate a mapping from outside params.yaml (a mirror manifest) against a schema."""
    try:
        return _build(cls, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _apply_profile(section: Any, profile: Any, name: str) -> Any:
    """Merge each entry's `quick:` overrides when the quick profile is on, then drop them."""
    if not isinstance(section, dict):
        return section
    merged = {}
    for key, entry in section.items():
        if not isinstance(entry, dict):
            merged[key] = entry
            continue
        entry = dict(entry)
        overrides = entry.pop("quick", None) or {}
        if not isinstance(overrides, dict):
            raise ConfigError(f"{name}.{key}.quick: expected a mapping of overrides")
        merged[key] = _deep_merge(entry, overrides) if profile == "quick" else entry
    return merged


def _deep_merge(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _build(cls: type, data: Any, path: str, key: str | None = None) -> Any:
    where = path or "top level"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    settable = {n for n, f in fields.items() if not f.metadata.get("from_key")}
    unknown = sorted(set(data) - settable)
    if unknown:
        raise ConfigError(
            f"{_join(path, unknown[0])}: unknown key; allowed keys here: {sorted(settable)}"
        )
    kwargs = {}
    for name, fld in fields.items():
        if fld.metadata.get("from_key"):
            kwargs[name] = key
        elif name in data:
            kwargs[name] = _coerce(hints[name], data[name], _join(path, name))
        elif fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_join(path, name)}: missing required key")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(_join(path, str(exc))) from None


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        errors = []
        for member in typing.get_args(tp):
            try:
                return _coerce(member, value, path)
            except ConfigError as exc:
                if str(exc).startswith(f"{path}."):
                    raise  # the value has this member's shape: report its inner key path
                errors.append(str(exc).split(": ", 1)[-1])
        raise ConfigError(f"{path}: {' or '.join(errors)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{path}: expected null, got {_show(value)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed and type(value) in {type(a) for a in allowed}:
            return value
        raise ConfigError(f"{path}: expected one of {list(allowed)}, got {_show(value)}")
    if origin is tuple:
        item_tp = typing.get_args(tp)[0]
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {_show(value)}")
        return tuple(_coerce(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {_show(value)}")
        if dataclasses.is_dataclass(value_tp):
            return {
                str(k): _build(value_tp, v, _join(path, str(k)), str(k)) for k, v in value.items()
            }
        return {
            _coerce(key_tp, k, path): _coerce(value_tp, v, _join(path, str(k)))
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {_show(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected an integer, got {_show(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{path}: expected a number, got {_show(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {_show(value)}")
    raise TypeError(f"config schema uses an unsupported type {tp!r} at {path}")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"

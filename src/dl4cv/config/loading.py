"""params.yaml -> `Params`: read the YAML, apply the profile, validate, say what is wrong.

Each dataset and experiment may carry a `quick:` block: overrides merged in (deeply) when
`profile: quick` is selected, so both profiles live side by side in one file. Both profiles
are validated, so a typo in a `quick:` block fails under `profile: book` too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dl4cv.config.base import PARAMS_FILE, ConfigError, adapter
from dl4cv.config.messages import one_line
from dl4cv.config.params import Params, check_references

PROFILED = ("datasets", "experiments", "captcha", "exercises", "detect")  # may hold quick:


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word; a key written twice (an edit
    by hand beside one by `dvc exp run -S`) would silently drop the first value."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` overrides on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = lines.get(key)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                continue
            if first is not None:
                raise ConfigError(
                    f"line {line}: duplicate key {key!r} (first on line {first}); "
                    "YAML would keep only the last value"
                )
            lines[key] = line
        return super().construct_mapping(node, deep=deep)


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # a SafeLoader
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (run from the repository root)") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    return parse_params(raw, source=str(path))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message spans several lines; a stage reports one."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return where + " ".join(problem.split())


def parse_params(raw: Any, source: str = PARAMS_FILE) -> Params:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    profile = raw.get("profile", "book")
    params = _build_profile(raw, profile, source)
    # Build the other profile too, so a typo in a `quick:` block fails under `profile: book`;
    # second, so an error of the shared settings is not reported as the other profile's.
    for other in {"book", "quick"} - {profile}:
        _build_profile(raw, other, source)
    check_references(params, source)
    return params


def _build_profile(raw: dict, profile: Any, source: str) -> Params:
    raw = dict(raw)
    for name in PROFILED:
        if name in raw:
            raw[name] = _apply_profile(raw[name], profile, name)
    where = f" (with profile {profile} applied)" if profile != raw.get("profile", "book") else ""
    try:
        return validate(Params, raw)
    except ConfigError as exc:
        raise ConfigError(f"{source}{where}: {exc}") from None


def build(cls: type, data: Any, where: str) -> Any:
    """Validate a mapping from outside params.yaml (a mirror manifest) against a schema."""
    try:
        return validate(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def validate(cls: type, data: Any) -> Any:
    """`data` as a `cls`, or a ConfigError of one line naming the first wrong key."""
    try:
        return adapter(cls).validate_python(data)
    except ValidationError as exc:
        raise ConfigError(one_line(exc, cls, data)) from None


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

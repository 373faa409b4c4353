"""The building blocks of every settings class: the error, strict scalar types, bounds.

pydantic validates; these aliases make it as strict as a typo deserves: YAML's `yes`, `"12"`
or `12.0` is not silently taken for true or an integer, and an int is accepted for a float.
"""

from __future__ import annotations

from functools import cache, partial
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, Strict, TypeAdapter
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticKnownError

from dl4cv.runtime.errors import InputError

PARAMS_FILE = "params.yaml"
SEED_MAX = 2**32 - 1  # NumPy's and scikit-learn's seeds are unsigned 32-bit integers
# The largest side of a processed image: the book's are 28 to 64 pixels; a larger side than
# this is a typo, not a setting.
MAX_SIDE = 4096


class ConfigError(InputError, ValueError):
    """params.yaml does not describe a valid pipeline."""


# Frozen (hashable, safe to share between stages) and closed: an unknown key is an error.
spec = partial(dataclass, frozen=True, config=ConfigDict(extra="forbid"))

Int = Annotated[int, Strict()]
Number = Annotated[float, Strict()]  # strict still takes an int, stored as a float
Bool = Annotated[bool, Strict()]
Seed = Annotated[int, Strict(), Field(ge=0, le=SEED_MAX)]  # a seed NumPy accepts
Chapter = Annotated[int, Strict(), Field(ge=1)]  # of the book
# `description` says why the upper bound is there; the error message repeats it.
Side = Annotated[
    int,
    Strict(),
    Field(
        ge=1,
        le=MAX_SIDE,
        description=f"a processed dataset is one in-memory array of N x height x width x "
        f"channels bytes: above {MAX_SIDE} pixels a side, one colour image alone would take "
        "over 48 MiB",
    ),
]


def _not_a_bool(value: Any) -> Any:
    """pydantic compares a Literal[1, 3] by equality, where True == 1."""
    if isinstance(value, bool):
        raise PydanticKnownError("literal_error", {"expected": "1 or 3"})
    return value


Channels = Annotated[Literal[1, 3], BeforeValidator(_not_a_bool)]


class FromKey:
    """Marks the field filled from the entry's key in its mapping (`experiments.<id>`)."""


KEY = FromKey()


class SchemaBy:
    """Marks a field whose settings class is chosen by a sibling key (an exercise's `kind`)."""

    def __init__(self, key: str, schemas: dict[str, type]) -> None:
        self.key, self.schemas = key, schemas


@cache
def adapter(cls: type) -> TypeAdapter:
    """pydantic's validator of `cls`, built once per process."""
    return TypeAdapter(cls)


def key_field(cls: type) -> str | None:
    """The field of `cls` marked `FromKey`, if any."""
    fields = getattr(cls, "__pydantic_fields__", {})
    return next((n for n, f in fields.items() if KEY in f.metadata), None)


def settable(cls: type) -> list[str]:
    """The keys a user may write for `cls`: its fields, less the one filled from the key."""
    return sorted(set(cls.__pydantic_fields__) - {key_field(cls)})


def keyed(cls: type) -> Any:
    """A mapping `<key>: {...}` of `cls` entries, each entry told its own key."""

    def with_keys(entries: Any) -> Any:
        if not isinstance(entries, dict):
            return entries
        field = key_field(cls)
        out = {}
        for key, entry in entries.items():
            if isinstance(entry, dict):
                if field in entry:
                    raise ConfigError(
                        f"{key}.{field}: unknown key; allowed keys here: {settable(cls)}"
                    )
                entry = {field: str(key), **entry}
            out[str(key)] = entry
        return out

    return Annotated[dict[str, cls], BeforeValidator(with_keys)]

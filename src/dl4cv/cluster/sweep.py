"""Experiments from DVC's own `-S` syntax: `-S key=a,b -S other=c,d` is the grid of every
combination, as `dvc exp run --queue -S` makes it."""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass


class SweepError(Exception):
    """A `-S` value that is not KEY=VALUE: one line for the user."""


@dataclass(frozen=True)
class Experiment:
    name: str  # the DVC experiment's name, unique for the commit it runs on
    overrides: tuple[str, ...]  # KEY=VALUE, each given to `dvc exp run` as `-S`


def split_values(value: str) -> list[str]:
    """`a,b` -> [a, b]; commas inside brackets or quotes belong to one value (`[a,b]`)."""
    values, depth, quote, current = [], 0, "", ""
    for char in value:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(current)
            current = ""
            continue
        current += char
    return [*values, current]


def grid(settings: list[str], prefix: str = "sweep") -> list[Experiment]:
    """One experiment per combination of the values of `settings` (KEY=V1,V2,...), named
    `<prefix>-<7 hex digits of its overrides>`: the same settings get the same name."""
    axes = []
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not re.fullmatch(r"[\w.\-\[\]:]+", key):
            raise SweepError(f"-S {setting!r}: expected KEY=VALUE or KEY=V1,V2,...")
        axes.append([f"{key}={v}" for v in split_values(value)])
    combos = itertools.product(*axes) if axes else [()]
    return [Experiment(f"{prefix}-{digest(c)}", tuple(c)) for c in combos]


def digest(overrides: tuple[str, ...]) -> str:
    return hashlib.sha1("\n".join(overrides).encode()).hexdigest()[:7]

"""pydantic's ValidationError -> the one line a stage prints.

The line names the full key path as the user wrote it in params.yaml and what was expected
there (`experiments.lenet_mnist.train.epochs: expected an integer >= 1, got 0`). pydantic's own
text ("Input should be greater than or equal to 1") names neither the key's allowed range nor,
for an unknown key, the keys allowed instead, so each error kind is said here, once.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from dl4cv.config.base import SchemaBy, settable

UNKNOWN = ("unexpected_keyword_argument", "extra_forbidden")
EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a mapping",
    "dataclass_type": "a mapping",
}


@dataclasses.dataclass
class Slot:
    """Where an error's loc leads in the schema: the key path and the type expected there."""

    path: str = ""
    tp: Any = None
    field: FieldInfo | None = None
    owner: type | None = None  # the settings class holding the key (for an unknown key)


def one_line(exc: ValidationError, root: type, raw: Any) -> str:
    """The first error (an unknown key before anything else: it explains what follows)."""
    errors = exc.errors(include_url=False)
    first = next((e for e in errors if e["type"] in UNKNOWN), errors[0])
    slot = locate(root, first["loc"], raw)
    alternatives = [  # the members of a union (`"auto"` or a bool) each say what they take
        e for e in errors if e["loc"][: len(first["loc"]) - 1] == first["loc"][:-1]
    ]
    if slot.tp is UNION_MEMBER and len(alternatives) > 1:
        parent = locate(root, first["loc"][:-1], raw)
        said = [_said(e, parent).split(", got ")[0].removeprefix("expected ") for e in alternatives]
        return f"{parent.path}: expected {' or '.join(said)}, got {_show(first['input'])}"
    return _message(first, slot)


def _message(error: dict, slot: Slot) -> str:
    kind = error["type"]
    if kind == "value_error":  # a check of several keys, already worded by the settings class
        text = str(error["ctx"]["error"])
        return f"{slot.path}.{text}" if slot.path else text
    return f"{slot.path or 'top level'}: {_said(error, slot)}"


def _said(error: dict, slot: Slot) -> str:
    kind, value = error["type"], error["input"]
    nullable = " or null" if _nullable(slot.tp) else ""
    if kind in UNKNOWN:
        return f"unknown key; allowed keys here: {settable(slot.owner)}"
    if kind == "missing":
        return "missing required key"
    if kind == "literal_error":
        return f"expected one of {list(typing.get_args(_literal(slot.tp)))}, got {_show(value)}"
    if kind in EXPECTED:
        return f"expected {EXPECTED[kind]}{nullable}, got {_show(value)}"
    if kind in ("greater_than", "greater_than_equal", "less_than_equal", "less_than"):
        return _out_of_bounds(value, slot, nullable)
    return f"{error['msg']}, got {_show(value)}"


def _out_of_bounds(value: Any, slot: Slot, nullable: str) -> str:
    """The whole allowed range, not only the side that failed: `an integer in 0..4294967295`."""
    meta = slot.field.metadata if slot.field else []
    bound = {
        name: getattr(m, name) for m in meta for name in ("gt", "ge", "le") if hasattr(m, name)
    }
    is_int = _strip(slot.tp) is int
    what = "an integer" if is_int else "a number"
    gt, ge, le = bound.get("gt"), bound.get("ge"), bound.get("le")
    if le is None:
        expected = f"{what} > {gt}" if ge is None else f"{what} >= {ge}"
    elif ge is None:
        expected = f"{what} in ({gt}, {le}]"
    else:
        expected = f"{what} in {ge}..{le}" if is_int else f"{what} in [{ge}, {le}]"
    shown = value if is_int else float(value)
    why = slot.field.description if slot.field else None
    reason = f" ({why})" if why and le is not None and value > le else ""
    return f"expected {expected}{nullable}, got {shown}{reason}"


def locate(root: type, loc: tuple, raw: Any) -> Slot:
    """Follow an error's loc through the settings classes, as the user's keys."""
    slot = Slot(tp=root)
    data = raw  # the user's value at this point of the loc
    # pydantic puts a wrong key of a mapping as (key, "[key]"): the key is no part of the path
    loc = tuple(p for i, p in enumerate(loc) if loc[i + 1 : i + 2] != ("[key]",))
    for part in loc:
        tp = _strip(slot.tp)
        if dataclasses.is_dataclass(tp):
            fields = tp.__pydantic_fields__
            slot.owner, slot.path = tp, _join(slot.path, str(part))
            if part not in fields:
                slot.tp, slot.field = None, None
                return slot
            slot.field = fields[part]
            slot.tp = _schema_by(slot.field, data)
            data = data.get(part) if isinstance(data, dict) else None
        elif typing.get_origin(tp) is dict:
            key_tp, value_tp = typing.get_args(tp)
            slot.field = None
            if part == "[key]":
                slot.tp = key_tp
            else:
                slot.path, slot.tp = _join(slot.path, str(part)), value_tp
                data = data.get(part) if isinstance(data, dict) else None
        elif typing.get_origin(tp) is tuple:
            slot.path += f"[{part}]"
            slot.tp, slot.field = typing.get_args(tp)[0], None
        elif _is_union(tp):  # pydantic names the member it tried: not a key of the user's
            slot.tp = UNION_MEMBER
            return slot
    return slot


UNION_MEMBER = object()


def _schema_by(field: FieldInfo, parent: Any) -> Any:
    for meta in field.metadata:
        if isinstance(meta, SchemaBy) and isinstance(parent, dict):
            return meta.schemas.get(parent.get(meta.key), field.annotation)
    return field.annotation


def _strip(tp: Any) -> Any:
    """`Annotated[X, ...]` and `X | None` -> X."""
    if typing.get_origin(tp) is typing.Annotated:
        return _strip(typing.get_args(tp)[0])
    if _is_union(tp):
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        if len(members) == 1:
            return _strip(members[0])
    return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _nullable(tp: Any) -> bool:
    return _is_union(tp) and type(None) in typing.get_args(tp)


def _literal(tp: Any) -> Any:
    tp = _strip(tp)
    if _is_union(tp):
        return next(m for m in typing.get_args(tp) if typing.get_origin(_strip(m)) is Literal)
    return tp


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"

"""Typed configuration from YAML: dataclasses filled from plain dicts, with errors that name the key.

YAML is always read by :mod:`aunet.yaml_loader` (PyYAML's safe loader, refusing duplicate keys and alias bombs);
no value is ever evaluated. Unknown keys are rejected with a
did-you-mean suggestion, wrong types name the expected type, and every error is a :class:`~aunet.errors.ConfigError`
carrying the dotted key (``model.caps[1]``) and, when loaded from a file, the file name.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

from aunet.errors import ConfigError, excerpt
from aunet.yaml_loader import read_yaml_file

T = TypeVar("T")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML file (through :mod:`aunet.yaml_loader`) into a dict; a missing, unreadable, non-mapping file, a
    duplicate key or an alias bomb is a ConfigError naming the file."""
    data = read_yaml_file(path)
    if not isinstance(data, dict):
        raise ConfigError("", "expected a YAML mapping at the top level (e.g. 'model: {...}')", str(path))
    return data


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp)
        return f"a list of {_type_name(inner)}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (int, float, str, bool, None, list[...], unions).

    Ints are accepted where floats are expected; floats with an integral value (``1.0e6`` written for a count) are
    accepted where ints are expected. Booleans are never taken for numbers. Strings that spell a number are taken
    as that number, because YAML 1.1 (PyYAML) reads ``3e-4`` and ``1e19`` without a dot as strings.
    """
    if tp in (int, float) and isinstance(value, str):
        value = _number_from_text(value, key)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        if isinstance(value, str) and any(a in (int, float) for a in typing.get_args(tp)):
            value = _number_from_text(value, key)
        if isinstance(value, float) and not math.isfinite(value):  # named as such, not as "expected X or null"
            raise ConfigError(key, f"expected a finite number, got {excerpt(value)}")
        errors = []
        for option in typing.get_args(tp):
            try:
                return coerce(value, option, key)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(key, f"expected {_type_name(tp)}, got {excerpt(value)}")
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected {_type_name(tp)}, got {excerpt(value)}")
        return [coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(key, f"expected null, got {excerpt(value)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected true or false, got {excerpt(value)}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(key, f"expected an integer, got {excerpt(value)}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(key, f"expected an integer, got {excerpt(value)}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {excerpt(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            number = math.inf
        if not math.isfinite(number):
            # NaN passes every range check (all comparisons are false) and inf makes a schedule or a budget
            # meaningless: refused here, for every numeric field at once.
            raise ConfigError(key, f"expected a finite number, got {excerpt(value)}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"expected a string, got {excerpt(value)}")
    if tp is Any:
        return value
    if tp in (dict, list):  # free-form sections, validated by their consumer
        if isinstance(value, tp):
            return value
        raise ConfigError(key, f"expected a {'mapping' if tp is dict else 'list'}, got {excerpt(value)}")
    raise TypeError(f"unsupported annotation {tp!r} for {key}")


def _number_from_text(text: str, key: str) -> float | str:
    """``"3e-4"`` -> 3e-4 (plain float parsing, never evaluation); anything else is returned unchanged."""
    try:
        number = float(text.strip().replace("_", ""))
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


@functools.lru_cache(maxsize=None)
def _type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints`` once per class: it dominated sweep planning (tens of thousands of configs built)."""
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``: unknown keys, missing required keys and wrong types are ConfigErrors."""
    if not isinstance(data, dict):
        raise ConfigError(prefix.rstrip("."), f"expected a mapping of {cls.__name__} fields, got {excerpt(data)}")
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            hint = difflib.get_close_matches(str(key), fields, n=1)
            suggestion = f"did you mean {hint[0]!r}? " if hint else ""
            raise ConfigError(f"{prefix}{excerpt(key, 60, quote=False)}",
                              f"unknown key; {suggestion}valid keys: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = coerce(data[name], hints[name], f"{prefix}{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{prefix}{name}", f"required key is missing; add '{name}:' to the section")
    return cls(**kwargs)

"""Typed dataclass configs built from untyped input (CLI ``--set k=v``, JSON, Tune).

Every config field may carry bounds in its metadata (``min``, ``max``, ``choices``);
``config_from_dict`` coerces strings to the field's type, rejects unknown keys
(suggesting the closest known one, so a typo is an error and not a silent
default) and checks the bounds. Errors are one-line ``ConfigError``s.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from typing import Any, TypeVar

from core.errors import UserError

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """A bad configuration value or key; the message is one line for the user."""


def bounded(default: Any, *, min: float | None = None, max: float | None = None,
            choices: tuple | None = None, help: str = "") -> Any:
    """A dataclass field with validation metadata."""
    meta = {"min": min, "max": max, "choices": choices, "help": help}
    return dataclasses.field(default=default, metadata=meta)


def _coerce(value: Any, typ: Any, key: str, owner: str) -> Any:
    if isinstance(typ, str):  # postponed annotations
        typ = {"int": int, "float": float, "bool": bool, "str": str}.get(typ, typ)
    args = typing.get_args(typ)
    if type(None) in args:  # ``X | None``: None (or JSON null) stays None, else an X
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0] if len(inner) == 1 else inner, key, owner)
    if typing.get_origin(typ) is tuple:  # ``tuple[X, ...]`` from a list, a tuple, "a,b,c" or "[a, b, c]"
        if isinstance(value, str) and value.strip().startswith("["):
            # How trials.csv writes a list-valued param (JSON), read back by rerun.py.
            try:
                value = json.loads(value)
            except ValueError:
                raise ConfigError(f"{owner}: {key}={value!r} is not a valid list") from None
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{owner}: {key}={value!r} must be a list")
        return tuple(_coerce(v, args[0], key, owner) for v in items)
    try:
        if typ is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            if isinstance(value, bool):
                return value
            raise ValueError
        if typ is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            if isinstance(value, str):
                f = float(value)
                if not f.is_integer():
                    raise ValueError
                return int(f)
            return int(value)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if typ is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{owner}: {key}={value!r} is not a valid {getattr(typ, '__name__', typ)}") from None
    return value


def field_specs(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def check_value(cls: type, key: str, value: Any, owner: str | None = None) -> Any:
    """Coerce and bound-check one value of config class ``cls``."""
    owner = owner or cls.__name__
    specs = field_specs(cls)
    if key not in specs:
        known = sorted(specs)
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{owner}: unknown key {key!r}{hint}; known keys: {', '.join(known)}")
    spec = specs[key]
    hints = typing.get_type_hints(cls)
    value = _coerce(value, hints.get(key, spec.type), key, owner)
    meta = spec.metadata or {}
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(f"{owner}: {key}={value!r} must be one of {', '.join(map(str, meta['choices']))}")
    for item in value if isinstance(value, tuple) else (value,):
        _check_bounds(item, meta, key, owner)
    return value


def _check_bounds(value: Any, meta: dict[str, Any], key: str, owner: str) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value:  # NaN
            raise ConfigError(f"{owner}: {key} must be a number, got NaN")
        if meta.get("min") is not None and value < meta["min"]:
            raise ConfigError(f"{owner}: {key}={value} is below its minimum {meta['min']}")
        if meta.get("max") is not None and value > meta["max"]:
            raise ConfigError(f"{owner}: {key}={value} is above its maximum {meta['max']}")


def config_from_dict(cls: type[T], values: dict[str, Any] | None, owner: str | None = None) -> T:
    """Build config ``cls`` from ``values``; unknown keys and bad values are errors."""
    values = dict(values or {})
    checked = {k: check_value(cls, k, v, owner) for k, v in values.items()}
    return cls(**checked)


def config_help(cls: type) -> list[str]:
    """One line per field: name, type, default, bounds, help text."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata or {}
        bounds = []
        if meta.get("choices"):
            bounds.append("one of " + "/".join(map(str, meta["choices"])))
        if meta.get("min") is not None or meta.get("max") is not None:
            bounds.append(f"[{meta.get('min')}, {meta.get('max')}]")
        typ = getattr(hints.get(f.name), "__name__", str(f.type))
        lines.append(f"{f.name} ({typ}, default {f.default!r}{', ' + ', '.join(bounds) if bounds else ''}): {meta.get('help', '')}")
    return lines

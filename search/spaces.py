"""Search spaces: parse, validate and clip what a strategy declares.

Each strategy declares its space in its own class (``search_space``: config
field -> ``core.space`` distribution; ``strategies.base.register`` checks it
against the config class). Here that space is read from the registered class
and adapted to one search: the user narrows a range with ``--range
key=low:high`` (or ``key=a,b`` for a categorical) and fixes a value with
``--set key=value``; a fixed key leaves the space and is passed to every trial
as is. Budget knobs are then clipped to what the stream can hold.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from core.config import ConfigError, check_value, field_specs
from core.space import C, Dist, F, I  # noqa: F401  (re-exported: callers build Dists from here)


def to_optuna(dist: Dist):
    """The Optuna distribution of ``dist`` (float, int or categorical)."""
    import optuna.distributions as od

    if dist.type == "float":
        return od.FloatDistribution(dist.low, dist.high, log=dist.log)
    if dist.type == "int":
        return od.IntDistribution(int(dist.low), int(dist.high), log=dist.log)
    return od.CategoricalDistribution(list(dist.choices))


def method_space(method: str) -> dict[str, Dist]:
    """A copy of the registered strategy's declared space."""
    from strategies import STRATEGIES

    if method not in STRATEGIES:
        raise ConfigError(f"unknown method {method!r}; known methods: {', '.join(sorted(STRATEGIES))}")
    return dict(STRATEGIES[method].search_space)


def parse_range(method: str, item: str, space: dict[str, Dist]) -> tuple[str, Dist]:
    """``lr=0.01:1`` / ``memory=100:500`` / ``selection=random,herding`` -> (key, Dist)."""
    from strategies import STRATEGIES

    cls = STRATEGIES[method].config_class
    key, sep, text = item.partition("=")
    key, text = key.strip(), text.strip()
    if not sep or not key or not text:
        raise ConfigError(f"--range {item!r} must look like key=low:high or key=a,b,c")
    if key not in field_specs(cls):
        check_value(cls, key, None, owner=method)  # raises the unknown-key error with a suggestion
    base = space.get(key)
    if ":" in text:
        lo_txt, _, hi_txt = text.partition(":")
        if not lo_txt.strip() or not hi_txt.strip() or ":" in hi_txt:
            raise ConfigError(f"--range {key}={text}: give one low and one high bound, key=low:high")
        lo = check_value(cls, key, lo_txt, owner=method)
        hi = check_value(cls, key, hi_txt, owner=method)
        if isinstance(lo, (bool, str)):
            raise ConfigError(f"--range {key}: a {type(lo).__name__} knob takes a list of choices (key=a,b), not low:high")
        if not lo < hi:
            raise ConfigError(f"--range {key}={text}: empty or inverted range (low must be below high)")
        log = base.log if base is not None and base.type != "categorical" else False
        if log and lo <= 0:
            raise ConfigError(f"--range {key}={text}: this knob is searched on a log scale, low must be > 0")
        kind = "int" if isinstance(lo, int) else "float"
        return key, Dist(kind, lo, hi, log)
    choices = tuple(check_value(cls, key, v.strip(), owner=method) for v in text.split(",") if v.strip())
    if len(choices) < 2:
        raise ConfigError(f"--range {key}={text}: give at least two choices (or fix it with --set {key}=...)")
    if len(set(choices)) != len(choices):
        raise ConfigError(f"--range {key}={text}: repeated choice")
    return key, C(*choices)


def resolve_space(method: str, ranges: list[str] | None, fixed: dict[str, Any]) -> tuple[dict[str, Dist], dict[str, Any]]:
    """Apply ``--range`` and ``--set`` to the method's space.

    Returns (searched space, typed fixed values). A key both fixed and ranged is an
    error; fixing every knob leaves an empty space, which is an error for a search.
    """
    from strategies import STRATEGIES

    space = method_space(method)
    cls = STRATEGIES[method].config_class
    typed_fixed = {k: check_value(cls, k, v, owner=method) for k, v in fixed.items()}
    for item in ranges or []:
        key, dist = parse_range(method, item, space)
        if key in typed_fixed:
            raise ConfigError(f"{key} is both fixed (--set) and searched (--range)")
        space[key] = dist
    for key in typed_fixed:
        space.pop(key, None)
    if not space:
        raise ConfigError(f"nothing left to search for {method}: every knob is fixed (use search/rerun.py for a single config)")
    for key, dist in space.items():
        if dist.type != "categorical" and (not math.isfinite(dist.low) or not math.isfinite(dist.high)):
            raise ConfigError(f"--range {key}: bounds must be finite")
    return space, typed_fixed


def fit_space_to_stream(space: dict[str, Dist], stream) -> dict[str, Dist]:
    """Clip budget knobs to what the stream can hold (a memory larger than the
    training data is an error in every strategy, so it must not be sampled)."""
    total_train = sum(len(t.train) for t in stream.tasks)
    out = dict(space)
    dist = out.get("memory")
    if dist is not None and dist.type == "int" and dist.high > total_train:
        if dist.low >= total_train:
            raise ConfigError(f"--range memory: low {dist.low} is not below the stream's {total_train} training images")
        out["memory"] = dataclasses.replace(dist, high=total_train)
    return out

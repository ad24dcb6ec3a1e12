"""Search spaces: parse, validate and clip what a strategy declares.

Each strategy declares its space in its own class (``search_space``: config
field -> ``core.space`` distribution; ``strategies.base.register`` checks it
against the config class). Here that space is read from the registered class
and adapted to one search: the user narrows a range with ``--range
key=low:high`` (or ``key=a,b`` for a categorical) and fixes a value with
``--set key=value``; a fixed key leaves the space and is passed to every trial
as is. Budget knobs are then clipped to what the stream can hold.

Besides the strategy's config fields, ``--set`` / ``--range`` reach the loop
knobs a trial may override (core/knobs.py: batch size, augmentation, crop
padding; epochs only with ``--search-protocol epochs``, as it defines the
benchmark), typed and bounded by ``LoopConfig`` the same way.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from typing import Any

from core.config import ConfigError, check_value, field_specs
from core.knobs import LOOP_KNOBS, PROTOCOL_KNOBS, knob_kind
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
    """``lr=0.01:1`` / ``memory=100:500`` / ``selection=random,herding`` /
    ``batch_size=16,32`` -> (key, Dist)."""
    key, sep, text = item.partition("=")
    key, text = key.strip(), text.strip()
    if not sep or not key or not text:
        raise ConfigError(f"--range {item!r} must look like key=low:high or key=a,b,c")
    cls, owner = knob_owner(method, key)
    if typing.get_origin(typing.get_type_hints(cls).get(key)) is tuple:
        # A categorical over lists would hand Optuna non-scalar choices.
        raise ConfigError(f"--range {key}: a list knob is not searched; fix it with --set {key}=a,b")
    base = space.get(key)
    if "(" in text or ")" in text:
        # "lr=log(0.001,1)" would otherwise be split at its comma into two odd choices.
        scale = f" ({key} is searched on a {'log' if base is not None and base.log else 'linear'} scale)" \
            if base is not None and base.type != "categorical" else ""
        raise ConfigError(f"--range {key}={text}: write a range as {key}=low:high, the scale comes from the "
                          f"search space{scale}")
    if ":" in text:
        lo_txt, _, hi_txt = text.partition(":")
        if not lo_txt.strip() or not hi_txt.strip() or ":" in hi_txt:
            raise ConfigError(f"--range {key}={text}: give one low and one high bound, key=low:high")
        lo = check_value(cls, key, lo_txt, owner=owner)
        hi = check_value(cls, key, hi_txt, owner=owner)
        if isinstance(lo, (bool, str)):
            raise ConfigError(f"--range {key}: a {type(lo).__name__} knob takes a list of choices (key=a,b), not low:high")
        if not lo < hi:
            raise ConfigError(f"--range {key}={text}: empty or inverted range (low must be below high)")
        log = base.log if base is not None and base.type != "categorical" else False
        if log and lo <= 0:
            raise ConfigError(f"--range {key}={text}: this knob is searched on a log scale, low must be > 0")
        kind = "int" if isinstance(lo, int) else "float"
        return key, Dist(kind, lo, hi, log)
    choices = tuple(check_value(cls, key, v.strip(), owner=owner) for v in text.split(",") if v.strip())
    if len(choices) < 2:
        raise ConfigError(f"--range {key}={text}: give at least two choices (or fix it with --set {key}=...)")
    if len(set(choices)) != len(choices):
        raise ConfigError(f"--range {key}={text}: repeated choice")
    return key, C(*choices)


def knob_owner(method: str, key: str) -> tuple[type, str]:
    """The config class that types ``key`` and the name its errors start with:
    ``LoopConfig`` ("loop") for a loop knob, else the method's config class.
    An unknown key is an error naming the closest known one, loop knobs included."""
    from strategies import STRATEGIES
    from strategies.loop import LoopConfig

    if key in LOOP_KNOBS:
        return LoopConfig, "loop"
    cls = STRATEGIES[method].config_class
    if key not in field_specs(cls):
        known = sorted(set(field_specs(cls)) | set(LOOP_KNOBS))
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{method}: unknown key {key!r}{hint}; known keys: {', '.join(known)}")
    return cls, method


def check_knob(method: str, key: str, value: Any) -> Any:
    """Coerce and bound-check one ``--set`` value, loop knob or strategy field."""
    cls, owner = knob_owner(method, key)
    return check_value(cls, key, value, owner=owner)


def check_protocol_keys(keys, search_protocol, flag: str) -> None:
    """A protocol knob (core/knobs.py) is set or ranged per trial only when the
    user named it in ``--search-protocol``: otherwise two trials would measure
    different benchmarks without anyone asking for it."""
    for key in keys:
        if key in PROTOCOL_KNOBS and key not in search_protocol:
            raise ConfigError(f"{flag} {key}: {key} is part of the benchmark protocol, the same for every trial "
                              f"(set it with --{key.replace('_', '-')}); add --search-protocol {key} to search it")


def parse_search_protocol(items: list[str] | None) -> tuple[str, ...]:
    """``--search-protocol epochs`` (repeatable or comma-separated) -> the protocol keys allowed."""
    keys = tuple(k.strip() for item in items or [] for k in item.split(",") if k.strip())
    for key in keys:
        if key not in PROTOCOL_KNOBS:
            raise ConfigError(f"--search-protocol {key}: a search may vary only {', '.join(PROTOCOL_KNOBS)} of the "
                              "protocol (classes, tasks and the evaluation split are the stream's)")
    return keys


def knob_kinds(keys) -> dict[str, str]:
    """key -> protocol / training / strategy (core/knobs.py) for searched and fixed keys."""
    from strategies.base import StrategyConfig

    training = tuple(field_specs(StrategyConfig))
    return {k: knob_kind(k, training) for k in keys}


def resolve_space(method: str, ranges: list[str] | None, fixed: dict[str, Any],
                  search_protocol: tuple[str, ...] = ()) -> tuple[dict[str, Dist], dict[str, Any]]:
    """Apply ``--range`` and ``--set`` to the method's space.

    Returns (searched space, typed fixed values); both may hold loop knobs,
    which each trial applies to its own loop config. A key both fixed and
    ranged is an error, as is a protocol knob not named in ``search_protocol``;
    fixing every knob leaves an empty space, which is an error for a search.
    """
    space = method_space(method)
    check_protocol_keys(fixed, search_protocol, "--set")
    typed_fixed = {k: check_knob(method, k, v) for k, v in fixed.items()}
    for item in ranges or []:
        key, dist = parse_range(method, item, space)
        check_protocol_keys([key], search_protocol, "--range")
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

"""Search spaces: one place that says which knobs of each method are searched, and how.

Each entry is a distribution over a field of the method's typed config (so a
typo in a space or on the command line is caught against the config class).
The user narrows a range with ``--range key=low:high`` (or ``key=a,b`` for a
categorical) and fixes a value with ``--set key=value``; a fixed key leaves the
space and is passed to every trial as is.

Ranges follow the sources in DESIGN §6: learning rate on a log scale (the iCaRL
reimplementation found it the dominant knob, 0.1 .. 2), memory as a budget on a
log scale, KD temperature around the notebook's T = 2, PackNet's prune ratio
around the paper's 0.75.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from core.config import ConfigError, check_value, field_specs
from core.space import C, Dist, F, I  # noqa: F401  (F, I, C: the spaces below)


LR = F(1e-3, 1.0, log=True)
MEMORY = I(40, 2000, log=True)

SPACES: dict[str, dict[str, Dist]] = {
    "finetune": {"lr": LR},
    "joint": {"lr": LR},
    "replay": {"lr": LR, "memory": MEMORY, "kd_weight": F(0.0, 4.0), "temperature": F(1.0, 8.0, log=True)},
    "icarl": {"lr": F(0.01, 4.0, log=True), "memory": MEMORY, "weight_decay": F(1e-6, 1e-3, log=True)},
    "lwf": {"lr": LR, "kd_weight": F(0.1, 10.0, log=True), "temperature": F(1.0, 8.0, log=True)},
    "ewc": {"lr": LR, "ewc_lambda": F(1.0, 1e5, log=True)},
    "gem": {"lr": LR, "memory": MEMORY, "memory_strength": F(0.0, 1.0)},
    "der": {"lr": LR, "memory_per_class": I(2, 50, log=True), "aux_weight": F(0.0, 2.0)},
    "packnet": {"lr": LR, "prune_ratio": F(0.3, 0.9)},
    "gdumb": {"lr": LR, "memory": MEMORY},
}


def to_optuna(dist: Dist):
    """The Optuna distribution of ``dist`` (float, int or categorical)."""
    import optuna.distributions as od

    if dist.type == "float":
        return od.FloatDistribution(dist.low, dist.high, log=dist.log)
    if dist.type == "int":
        return od.IntDistribution(int(dist.low), int(dist.high), log=dist.log)
    return od.CategoricalDistribution(list(dist.choices))


def method_space(method: str) -> dict[str, Dist]:
    from strategies import STRATEGIES

    if method not in STRATEGIES:
        raise ConfigError(f"unknown method {method!r}; known methods: {', '.join(sorted(STRATEGIES))}")
    space = dict(SPACES.get(method, {"lr": LR}))
    # The space must only name real config fields (checked here, once).
    specs = field_specs(STRATEGIES[method].config_class)
    unknown = [k for k in space if k not in specs]
    if unknown:
        raise ConfigError(f"search space of {method} names unknown config keys {unknown}")
    return space


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

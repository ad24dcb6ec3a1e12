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


def method_loop_defaults(method: str, taken: Any = (), flags_given: tuple[str, ...] = ()) -> dict[str, Any]:
    """The method's own training loop knobs (``Strategy.loop_defaults``: part
    of its default config) that the user did not set: not a key of ``taken``
    (its --set or --range keys) nor a loop flag it gave (``flags_given``, e.g.
    ("augment",) for --augment). Applied like a --set, so search.json's fixed
    values, trials.csv and each result.json record them. The values come back
    checked (``check_knob``) so every path that applies them -- a search's
    space, a direct rerun, the dry run, the defaults record -- sees the same
    typed values."""
    from strategies import STRATEGIES

    own = STRATEGIES[method].loop_defaults if method in STRATEGIES else {}
    return {k: check_knob(method, k, v) for k, v in own.items() if k not in taken and k not in flags_given}


def loop_flags_given(args: Any) -> tuple[str, ...]:
    """The training loop knobs a command-line flag set (--batch-size, --augment):
    a flag the user gave wins over a method's ``loop_defaults``."""
    from core.knobs import TRAINING_LOOP_KNOBS

    return tuple(k for k in TRAINING_LOOP_KNOBS if getattr(args, k, None) is not None)


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
                  search_protocol: tuple[str, ...] = (), allow_empty: bool = False,
                  flags_given: tuple[str, ...] = ()) -> tuple[dict[str, Dist], dict[str, Any]]:
    """Apply ``--range`` and ``--set`` to the method's space.

    Returns (searched space, typed fixed values); both may hold loop knobs,
    which each trial applies to its own loop config. The method's own loop
    defaults (``method_loop_defaults``) join the fixed values unless the user
    set, ranged or flagged (``flags_given``) the knob. A key both fixed and
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
    typed_fixed.update(method_loop_defaults(method, {*typed_fixed, *space}, flags_given))
    if not space and not allow_empty:
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


# --------------------------------------------------------------------------
# one search across several methods (search/run.py --method a,b,c)
# --------------------------------------------------------------------------
#
# One Optuna study whose first parameter is the method (a categorical), and
# below it that method's own space, define-by-run: TPE models which method
# deserves the budget next to each method's knobs. Optuna needs one
# distribution per parameter name across the study, and two methods' ``lr``
# may have different ranges, so inside Optuna each knob is named
# ``<method>/<knob>`` (``optuna_name``); a trial's config is decoded back to the
# method's plain keys plus ``method`` (``decode_params``), so a trial's params
# hold only its own method's keys.

METHOD_PARAM = "method"
SEP = "/"


def _is_prefixed(key: str, methods: list[str]) -> tuple[str, str] | None:
    head, dot, tail = key.partition(".")
    if not dot:
        return None
    if head not in methods:
        raise ConfigError(f"{key}: {head!r} is not one of the methods searched ({', '.join(methods)})")
    return head, tail


def _check_common_key(flag: str, key: str, methods: list[str]) -> None:
    """A ``--set``/``--range`` key without a method prefix applies to every
    method: each must have it (loop knobs they all have)."""
    from strategies import STRATEGIES

    if key in LOOP_KNOBS:
        return
    have = [m for m in methods if key in field_specs(STRATEGIES[m].config_class)]
    if not have:
        knob_owner(methods[0], key)  # the unknown-key error, with its "did you mean"
    lacking = [m for m in methods if m not in have]
    if lacking:
        raise ConfigError(f"{flag} {key}: only {', '.join(have)} of the methods searched "
                          f"{'has' if len(have) == 1 else 'have'} {key!r} ({', '.join(lacking)} "
                          f"{'does' if len(lacking) == 1 else 'do'} not); give it per method: "
                          f"{flag} {have[0]}.{key}=...")


def resolve_spaces(methods: list[str], ranges: list[str] | None, fixed: dict[str, Any],
                   search_protocol: tuple[str, ...] = (), flags_given: tuple[str, ...] = ()
                   ) -> tuple[dict[str, dict[str, Dist]], dict[str, Any], dict[str, dict[str, Any]]]:
    """``resolve_space`` for each of several methods searched together.

    ``--set KEY=V`` / ``--range KEY=...`` apply to every method and must name a
    key each method has; ``--set METHOD.KEY=V`` / ``--range METHOD.KEY=...``
    apply to that method alone. Returns (method -> searched space, the common
    typed fixed values, method -> its own typed fixed values, its loop defaults
    included: ``resolve_space``). A method whose
    every knob is fixed keeps an empty space (the method itself is still searched).
    """
    common_fixed: dict[str, Any] = {}
    own_fixed: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for key, value in fixed.items():
        pre = _is_prefixed(key, methods)
        if pre is None:
            _check_common_key("--set", key, methods)
            common_fixed[key] = value
        else:
            own_fixed[pre[0]][pre[1]] = value
    common_ranges: list[str] = []
    own_ranges: dict[str, list[str]] = {m: [] for m in methods}
    for item in ranges or []:
        key, sep, rest = item.partition("=")
        pre = _is_prefixed(key.strip(), methods)
        if pre is None:
            if sep and key.strip():
                _check_common_key("--range", key.strip(), methods)
            common_ranges.append(item)
        else:
            own_ranges[pre[0]].append(f"{pre[1]}={rest}")
    spaces: dict[str, dict[str, Dist]] = {}
    typed_common: dict[str, Any] = {}
    typed_own: dict[str, dict[str, Any]] = {}
    for m in methods:
        for key in own_fixed[m]:
            if key in common_fixed:
                raise ConfigError(f"--set {m}.{key} and --set {key}: give {key} once")
        space, typed = resolve_space(m, common_ranges + own_ranges[m], {**common_fixed, **own_fixed[m]},
                                     search_protocol, allow_empty=True, flags_given=flags_given)
        spaces[m] = space
        typed_common = {k: typed[k] for k in common_fixed}
        typed_own[m] = {k: v for k, v in typed.items() if k not in common_fixed}
    return spaces, typed_common, typed_own


def optuna_name(method: str, key: str) -> str:
    """A knob's name inside the cross-method Optuna study."""
    return f"{method}{SEP}{key}"


def _suggest(trial, name: str, dist: Dist) -> Any:
    if dist.type == "float":
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    if dist.type == "int":
        return trial.suggest_int(name, int(dist.low), int(dist.high), log=dist.log)
    return trial.suggest_categorical(name, list(dist.choices))


class DefineByRun:
    """The Optuna define-by-run function of a cross-method search: the method
    first, then that method's knobs (named ``optuna_name``). A class, not a
    closure: Tune pickles the searcher (and so this) with its experiment state."""

    def __init__(self, spaces: dict[str, dict[str, Dist]]) -> None:
        self.spaces = {m: dict(sp) for m, sp in spaces.items()}

    def __call__(self, trial) -> None:
        method = trial.suggest_categorical(METHOD_PARAM, list(self.spaces))
        for key, dist in self.spaces[method].items():
            _suggest(trial, optuna_name(method, key), dist)
        return None


def define_by_run(spaces: dict[str, dict[str, Dist]]) -> DefineByRun:
    return DefineByRun(spaces)


def decode_params(params: dict[str, Any]) -> dict[str, Any]:
    """An Optuna trial's params -> the trial's config: ``method`` and that
    method's plain keys only."""
    method = params[METHOD_PARAM]
    prefix = method + SEP
    return {METHOD_PARAM: method, **{k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}}


def encode_params(config: dict[str, Any], spaces: dict[str, dict[str, Dist]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A finished trial's method and knobs -> (Optuna params, their distributions),
    for ``optuna.trial.create_trial`` (a warm start)."""
    method = config[METHOD_PARAM]
    params = {METHOD_PARAM: method}
    dists = {METHOD_PARAM: to_optuna(C(*spaces))}
    for key, dist in spaces[method].items():
        params[optuna_name(method, key)] = config[key]
        dists[optuna_name(method, key)] = to_optuna(dist)
    return params, dists

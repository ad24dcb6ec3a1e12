"""Fidelity rungs of a successive-halving search that keeps every task.

Successive halving (Jamieson & Talwalkar, AISTATS 2016) spends little on every
configuration at a low fidelity and more only on the best; ASHA (Li et al.,
MLSys 2020, Alg. 2) decides each promotion as soon as a configuration reaches
a rung. MO-ASHA over tasks (search/mo_asha.py) uses the task prefix as the
fidelity, but forgetting only shows after several tasks, so it loses the
low-forgetting end of the front. Here every rung runs the WHOLE task sequence,
only cheaper: fewer epochs per task (``epochs``) and/or a share of each
class's training / evaluation images (``train_fraction``, ``eval_fraction``;
datasets/stream.py ``fidelity_subset``). A promoted configuration is trained
again from scratch at the next rung (promotion by rerun: a run with fewer
epochs per task is a different run, not a prefix of the full one), and the
last rung is the search's own protocol.

A rung is a dict of protocol-knob overrides (core/knobs.py ``PROTOCOL_KNOBS``);
``--fidelity epochs=2`` on the command line, repeated cheapest first. Nothing
here imports torch: the command line checks rungs before any heavy import.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from core.errors import UsageError
from core.knobs import PROTOCOL_KNOBS

# The keys a rung may lower, and how each is typed.
FIDELITY_KEYS = PROTOCOL_KNOBS
# How a trial's report and result.json say which rung it ran (0 = cheapest;
# len(cheap rungs) = the search's own protocol) -- search/trainable.py.
RUNG_KEY = "fidelity_rung"
TOP_KEY = "fidelity_top"
RUNG_DONE_KEY = "rung_done"
FIDELITY_TEXT_KEY = "fidelity_text"  # the rung's overrides as text, in a report
RECORD_KEY = "fidelity"  # result.json: {"rung", "top", "overrides", "history"}
PROMOTION_RULES = ("pareto", "first", "split")


def parse_rung(text: str) -> dict[str, Any]:
    """``epochs=2,train_fraction=0.5`` -> {"epochs": 2, "train_fraction": 0.5}."""
    rung: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not value.strip():
            raise UsageError(f"--fidelity {text!r}: expected KEY=VALUE[,KEY=VALUE] with keys from "
                             f"{', '.join(FIDELITY_KEYS)}")
        if key not in FIDELITY_KEYS:
            raise UsageError(f"--fidelity {text!r}: {key!r} is not a fidelity (use {', '.join(FIDELITY_KEYS)})")
        if key in rung:
            raise UsageError(f"--fidelity {text!r}: {key} given twice")
        try:
            rung[key] = int(value) if key == "epochs" else float(value)
        except ValueError:
            kind = "a whole number" if key == "epochs" else "a number"
            raise UsageError(f"--fidelity {text!r}: {key} must be {kind}, got {value.strip()!r}") from None
    if not rung:
        raise UsageError(f"--fidelity {text!r}: no KEY=VALUE given")
    return rung


def check_rungs(rungs: Sequence[Mapping[str, Any]], protocol: Mapping[str, Any],
                searched: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The cheap rungs, checked against the search's own ``protocol`` values of
    the fidelity keys (the top rung): each value in range and no dearer than the
    protocol, every rung no dearer than the next in any key and cheaper in at
    least one, no key that the search also ranges (``searched``)."""
    out = [dict(r) for r in rungs]
    for rung in out:
        for key, value in rung.items():
            if key in searched:
                raise UsageError(f"--fidelity: {key} is searched (--search-protocol {key}); a fidelity cannot "
                                 f"also lower it")
            top = protocol[key]
            if key == "epochs" and not 1 <= value <= top:
                raise UsageError(f"--fidelity epochs={value}: must be 1..{top} (the search's --epochs)")
            if key != "epochs" and not 0.0 < value <= top:
                raise UsageError(f"--fidelity {key}={value:g}: must be in (0, {top:g}] (the search's own {key})")
    full = {k: protocol[k] for k in FIDELITY_KEYS}
    ladder = [{**full, **r} for r in out] + [full]
    for n in range(len(out)):
        here, nxt = ladder[n], ladder[n + 1]
        if any(here[k] > nxt[k] for k in FIDELITY_KEYS):
            raise UsageError(f"--fidelity rungs go cheapest first: {describe(out[n])} is dearer than "
                             f"{describe(out[n + 1]) if n + 1 < len(out) else 'the protocol'} in "
                             f"{', '.join(k for k in FIDELITY_KEYS if here[k] > nxt[k])}")
        if here == nxt:
            raise UsageError(f"--fidelity {describe(out[n])} is no cheaper than "
                             f"{describe(out[n + 1]) if n + 1 < len(out) else 'the protocol itself'}")
    return out


def describe(rung: Mapping[str, Any] | None) -> str:
    """``epochs=2, train_fraction=0.5``; ``full`` for the top rung."""
    if not rung:
        return "full"
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in rung.items())


def rung_overrides(rungs: Sequence[Mapping[str, Any]], rung: int) -> dict[str, Any]:
    """The loop overrides of rung ``rung`` (none at the top rung)."""
    return dict(rungs[rung]) if rung < len(rungs) else {}


def below_top(record: Mapping[str, Any]) -> bool:
    """True for a result.json whose current run is a cheap rung's (its trial was
    stopped there, or is between rungs): its values are not the protocol's."""
    fid = record.get(RECORD_KEY)
    if not isinstance(fid, Mapping):
        return False
    rung, top = fid.get("rung"), fid.get("top")
    return isinstance(rung, int) and isinstance(top, int) and rung < top


def report_below_top(report: Mapping[str, Any]) -> bool:
    """True for a trial's report (search/trainable.py) from a cheap rung's run:
    a trial whose last report it is was stopped there."""
    return report.get(TOP_KEY) is not None and int(report.get(RUNG_KEY) or 0) < int(report[TOP_KEY])


def check_promotion(rule: str) -> str:
    if rule not in PROMOTION_RULES:
        raise UsageError(f"--promote {rule!r}: use one of {', '.join(PROMOTION_RULES)}")
    return rule

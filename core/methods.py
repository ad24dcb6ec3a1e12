"""The built-in strategy names, known without importing torch.

``strategies/__init__.py`` is the registry (importing it registers every
strategy, and imports torch: seconds on a small machine). The command lines
check a ``--method`` against this list first, so a typo is a one-line error
at once; tests/test_architecture.py keeps the list equal to the registry. A
method from a ``--strategy-module`` (or ``$CLSEARCH_STRATEGY_MODULES``, or a
search folder that recorded one) is only known after its import, so then the
check waits for the registry.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from core.errors import UsageError

ENV_VAR = "CLSEARCH_STRATEGY_MODULES"

BUILTIN_METHODS = ("der", "ewc", "finetune", "gdumb", "gem", "icarl", "joint", "lwf", "packnet", "replay")


def unknown_method_message(method: str, known) -> str:
    """The one error line for an unknown method (the registry's check says the same)."""
    return f"unknown method {method!r}; known methods: {', '.join(sorted(known))}"


def check_builtin_method(method: str) -> None:
    """Refuse ``method`` unless it is a built-in (call only when no plugin can add one)."""
    if method not in BUILTIN_METHODS:
        raise UsageError(unknown_method_message(method, BUILTIN_METHODS))


def requested(given: Iterable[str] | None, results_dir: str | Path | None = None) -> list[str]:
    """The modules a command asks for: ``--strategy-module`` values, then those of
    ``$CLSEARCH_STRATEGY_MODULES``; when there are none, those recorded in
    ``results_dir/search.json`` (a search being resumed or rerun)."""
    specs = [s.strip() for s in given or [] if s.strip()]
    specs += [s.strip() for s in os.environ.get(ENV_VAR, "").split(os.pathsep) if s.strip()]
    if not specs and results_dir is not None:
        try:
            recorded = json.loads((Path(results_dir) / "search.json").read_text()).get("strategy_modules")
        except (OSError, ValueError, AttributeError):
            recorded = None  # no readable spec: the command itself reports that, if it needs one
        specs = [s for s in recorded if isinstance(s, str)] if isinstance(recorded, list) else []
    return specs


def check_method_early(method: str | None, given: Iterable[str] | None, results_dir: str | Path | None) -> None:
    """A ``--method`` that no registry can hold, refused before torch is imported:
    not a built-in, and no strategy module asked for (flag, environment, or the
    search folder's record) that could register it."""
    if method is not None and not requested(given, results_dir):
        check_builtin_method(method)


# --------------------------------------------------------------------------
# one search across several methods (search/run.py --method a,b,c / all)
# --------------------------------------------------------------------------

# ``--method all``: every built-in class-incremental method except ``joint``,
# which keeps all past data (an upper bound, no continual learner: it would
# take the front by construction). Task-incremental methods (packnet) are
# measured on other metrics and never share a front with class-IL ones.
ALL = "all"
NOT_IN_ALL = ("joint",)


def parse_method_list(text: str) -> list[str]:
    """``"icarl"`` -> ["icarl"]; ``"icarl,der,replay"`` -> the list, in order;
    ``"all"`` -> ["all"] (expanded by ``expand_all`` once the registry is
    imported). Empty items, repeats and ``all`` inside a list are refused in
    one line; the names themselves are checked against the registry later."""
    items = [m.strip() for m in str(text).split(",")]
    if any(not m for m in items):
        raise UsageError(f"--method {text!r}: an empty name in the list (write --method a,b,c)")
    seen: set[str] = set()
    for m in items:
        if m in seen:
            raise UsageError(f"--method {text!r}: {m!r} is given twice")
        seen.add(m)
    if ALL in items and len(items) > 1:
        raise UsageError(f"--method {text!r}: 'all' stands alone (it means every class-incremental built-in)")
    return items


def expand_all(methods: list[str], registry) -> list[str]:
    """``["all"]`` -> the class-incremental built-ins (``NOT_IN_ALL`` left out);
    any other list unchanged. ``registry``: name -> strategy class."""
    if methods != [ALL]:
        return methods
    return [m for m in BUILTIN_METHODS
            if m in registry and not registry[m].task_incremental_only and m not in NOT_IN_ALL]


def check_method_list(methods: list[str], registry) -> None:
    """Each name registered; in a list of several, no task-incremental-only
    method (it is measured on task-IL metrics, so it is searched alone and
    compared apart, e.g. ``analysis/report.py A B``)."""
    for m in methods:
        if m not in registry:
            raise UsageError(unknown_method_message(m, registry))
    if len(methods) > 1:
        task_il = [m for m in methods if registry[m].task_incremental_only]
        if task_il:
            raise UsageError(f"--method {','.join(methods)}: {task_il[0]} is task-incremental only (scored on "
                             f"task-IL metrics, never on a front with class-IL methods): search it alone and "
                             f"compare the reports apart (analysis/report.py FOLDER1 FOLDER2)")


def spec_methods(spec: dict) -> list[str]:
    """The methods of a search.json: ``methods`` of a cross-method search, else
    [``method``]."""
    methods = spec.get("methods")
    if isinstance(methods, list) and methods:
        return [str(m) for m in methods]
    return [str(spec.get("method"))]


def is_cross_method(spec: dict) -> bool:
    """Whether a search.json is of one search across several methods."""
    return isinstance(spec.get("methods"), list) and len(spec["methods"]) > 1


def spec_space(spec: dict, method: str) -> dict:
    """The searched space (JSON form) of ``method`` in a search.json."""
    if is_cross_method(spec):
        return dict((spec.get("spaces") or {}).get(method) or {})
    return dict(spec.get("space") or {})


def spec_fixed(spec: dict, method: str) -> dict:
    """The fixed knobs of ``method`` in a search.json (a cross-method search's
    common ``fixed`` plus that method's own, ``fixed_by_method``)."""
    if is_cross_method(spec):
        return {**(spec.get("fixed") or {}), **((spec.get("fixed_by_method") or {}).get(method) or {})}
    return dict(spec.get("fixed") or {})

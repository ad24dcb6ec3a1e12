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

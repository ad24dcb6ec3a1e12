"""Strategies from outside the project: import a user's module so that its ``@register`` runs.

A user adds a strategy without touching the project by writing one module -- a
config dataclass, a ``search_space`` over it and a ``@register``-ed ``Strategy``
subclass, like any file of ``strategies/`` -- and naming it to the command-line
tools: ``--strategy-module PATH.py`` or ``--strategy-module package.module``
(repeatable), or in ``$CLSEARCH_STRATEGY_MODULES`` (several joined by
``os.pathsep``). Importing the module registers its strategy.

Searches run the strategy in Ray worker processes, which have imported nothing
of the driver's. So the driver records the modules it imported (a file as its
absolute path, a module by its name) in ``search.json`` and hands them to every
trial, which imports them before it builds its strategy or unpickles a
checkpoint (a checkpoint pickles the strategy object, whose class lives in the
module). A file is imported under its file name with its folder added to
``sys.path``, so pickles refer to it by the same name in every process. On a
Ray cluster the file must be where every node sees it, like the results folder
the trials write to (shared storage), or the module installed on every node.
``--resume`` and ``search/rerun.py RESULTS_DIR`` import the modules recorded in
``search.json`` unless others are given.
"""
from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from core.errors import UsageError, UserError

from core.methods import ENV_VAR, requested  # noqa: F401  (torch-free: the CLIs call it before heavy imports)

FLAG = "--strategy-module"


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def load_strategy_modules(specs: Iterable[str]) -> list[str]:
    """Import each module (a ``.py`` path or an importable module name) and check
    that it registered a strategy. Returns the modules as recorded for other
    processes: absolute paths for files, names for modules, without repeats."""
    import strategies  # noqa: F401  (the built-in strategies first: a plugin may build on them)

    done: list[str] = []
    for spec in specs:
        module, recorded = _import(spec)
        _check_registers(module, spec)
        if recorded not in done:
            done.append(recorded)
    return done


def load_cli_modules(given: Iterable[str] | None, results_dir: str | Path | None = None) -> list[str]:
    """``load_strategy_modules(requested(given, results_dir))``: the CLIs' one call."""
    return load_strategy_modules(requested(given, results_dir))


def _import(spec: str) -> tuple[ModuleType, str]:
    try:
        if _is_path(spec):
            path = Path(spec).expanduser().resolve()
            return _import_file(path, spec), str(path)
        return importlib.import_module(spec), spec
    except UsageError:
        raise
    except (ImportError, SyntaxError, UserError) as exc:
        raise UsageError(f"{FLAG} {spec}: {type(exc).__name__}: {exc}") from exc


def _import_file(path: Path, spec: str) -> ModuleType:
    if not path.is_file():
        raise UsageError(f"{FLAG} {spec}: no such file (give a .py file, or an importable module name)")
    if path.suffix != ".py" or not path.stem.isidentifier():
        raise UsageError(f"{FLAG} {spec}: a strategy file must be NAME.py with NAME a Python identifier")
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is None:
        folder = str(path.parent)
        # Appended, not prepended: the file's folder must not shadow the project's
        # or the standard library's modules for the rest of the process.
        if folder not in sys.path:
            sys.path.append(folder)
        loaded = importlib.import_module(name)
    origin = getattr(loaded, "__file__", None)
    if origin is None or Path(origin).resolve() != path:
        raise UsageError(f"{FLAG} {spec}: the module name {name!r} is already taken by {origin or 'a built-in module'}; "
                         "rename the file")
    return loaded


def _check_registers(module: ModuleType, spec: str) -> None:
    from strategies.base import STRATEGIES

    name = module.__name__
    if not any(cls.__module__ == name or cls.__module__.startswith(name + ".") for cls in STRATEGIES.values()):
        raise UsageError(f"{FLAG} {spec}: imported, but it registers no strategy "
                         "(decorate its Strategy subclass with @register from strategies.base)")

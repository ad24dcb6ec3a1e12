"""The layering of docs/ARCHITECTURE.md, checked on the source.

Imports run one way: every package may import ``core``; ``strategies`` may import
``datasets``; ``search`` may import everything; ``analysis`` only ``core`` (it
reads result files, never live objects). ``core`` imports no other package of
the project and neither torch nor Ray, so the command-line checks stay cheap.
The check reads every import statement (top level and inside functions) with
``ast``, so a lazy import inside a function cannot hide an upward dependency.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "datasets", "strategies", "search", "analysis")

# What each package may import from the project (itself always allowed).
ALLOWED = {
    "core": set(),
    "datasets": {"core"},
    "strategies": {"core", "datasets"},
    "analysis": {"core"},
    "search": {"core", "datasets", "strategies", "analysis"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_run_one_way(package):
    upward = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in _imports(path):
            if module in PACKAGES and module != package and module not in ALLOWED[package]:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not upward, f"{package} may import only {sorted(ALLOWED[package]) or 'nothing of the project'}: {upward}"


def test_core_imports_neither_torch_nor_ray():
    heavy = [f"{p.relative_to(ROOT)}:{line} imports {m}"
             for p in sorted((ROOT / "core").rglob("*.py"))
             for line, m in _imports(p) if m in ("torch", "ray", "optuna", "pandas", "matplotlib")]
    assert not heavy, heavy


def test_the_check_sees_lazy_imports(tmp_path):
    # The rule would be worthless if an import inside a function escaped it.
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from search.run import main\n    import strategies.loop\n")
    assert [m for _, m in _imports(module)] == ["search", "strategies"]


def test_the_documented_strategy_example_registers_and_trains(tmp_path, tiny_stream):
    """docs/ARCHITECTURE.md's one-file strategy, taken from the doc as written,
    imported as a user module and run through the loop."""
    import re

    from strategies.base import STRATEGIES
    from strategies.loop import make_strategy, run
    from strategies.plugins import load_strategy_modules
    from tests.helpers import assert_lower_triangular, tiny_loop_config

    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = doc.split("## Adding a strategy", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    module = tmp_path / "smooth_strategy_doc.py"
    module.write_text(code)
    try:
        load_strategy_modules([str(module)])
        assert "smooth" in STRATEGIES
        cfg = tiny_loop_config(epochs=1)
        strategy = make_strategy("smooth", {"smoothing": 0.2}, tiny_stream, cfg)
        assert_lower_triangular(run(strategy, tiny_stream, cfg, log=None), tiny_stream.num_tasks)
    finally:
        STRATEGIES.pop("smooth", None)


def test_the_torch_free_method_list_is_the_registry():
    """core/methods.py lets the command lines refuse a misspelt --method before
    torch is imported; it must name exactly the strategies the package registers."""
    from core.methods import BUILTIN_METHODS
    from strategies.base import STRATEGIES

    builtin = {name for name, cls in STRATEGIES.items() if cls.__module__.startswith("strategies.")}
    assert set(BUILTIN_METHODS) == builtin and list(BUILTIN_METHODS) == sorted(BUILTIN_METHODS)


@pytest.mark.slow  # a fresh interpreter: the point is what it imports
def test_an_unknown_method_is_refused_before_torch_is_imported():
    """search/run.py and rerun.py check --method against core/methods.py first
    (in a fresh interpreter this answers in a fraction of a second:
    bench/cli_startup.py); with a plugin module asked for, the registry decides."""
    import subprocess
    import sys

    code = ("import sys; from core.cli import cli_main; from search.run import main; "
            "code = cli_main(main, ['--method', 'icarll']); "
            "print(code, 'torch' in sys.modules, 'ray' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.stdout.split() == ["2", "False", "False"], proc.stdout + proc.stderr
    assert proc.stderr.strip().startswith("error: unknown method 'icarll'; known methods: der, ewc,")

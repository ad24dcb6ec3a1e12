"""A strategy is one file: its config, its search space and ``@register``.

- fast: ``register`` refuses a strategy class that could not be searched (no
  space of its own, a space over unknown or wrongly typed fields, bounds its
  config rejects, a name already taken), with a message that says what to fix;
  ``--strategy-module`` problems (no such file, nothing registered, a broken
  space) are one-line usage errors.
- slow: a toy strategy written to a temporary folder, with no file of the
  project touched, is searched by ``search/run.py --strategy-module`` (its
  trials run in Ray workers), rerun from the search's folder by
  ``search/rerun.py RESULTS_DIR`` (the module read back from search.json), and
  run directly by ``search/rerun.py --strategy-module ... --method toy``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import strategies  # noqa: F401  (the built-in strategies, for the name clash)
from core import space
from core.config import bounded
from core.errors import UsageError
from strategies.base import STRATEGIES, Strategy, StrategyConfig, StrategyDefinitionError, register
from strategies.finetune import Finetune


@dataclasses.dataclass
class KnobConfig(StrategyConfig):
    smoothing: float = bounded(0.1, min=0.0, max=0.5, help="a test knob")
    width: int = bounded(4, min=1, max=64, help="another test knob")


def _define(name="registry-test", base=Strategy, config=KnobConfig, **attrs):
    return type("Defined", (base,), {"name": name, "config_class": config, "__module__": __name__, **attrs})


@pytest.mark.parametrize("attrs, base, message", [
    ({}, Strategy, "declares no search_space"),
    ({}, Finetune, "declares no search_space"),  # an inherited space is not enough: the class must state its own
    ({"search_space": {}}, Strategy, "non-empty dict"),
    ({"search_space": {"lr": space.F(1e-3, 1.0, log=True), "smoothnig": space.F(0.0, 0.3)}}, Strategy,
     r"search_space names 'smoothnig', not fields of KnobConfig"),
    ({"search_space": {"smoothing": (0.0, 0.3)}}, Strategy, "must be a core.space"),
    ({"search_space": {"smoothing": space.F(0.0, 0.9)}}, Strategy, "above its maximum 0.5"),
    ({"search_space": {"width": space.F(1.0, 8.0)}}, Strategy, "float range over an int field"),
    ({"search_space": {"smoothing": space.F(0.0, 0.3, log=True)}}, Strategy, "log scale, low must be > 0"),
    ({"search_space": {"smoothing": space.F(0.3, 0.1)}}, Strategy, "low must be below high"),
    ({"search_space": {"lr_schedule": space.C("cosine")}}, Strategy, "at least two distinct choices"),
])
def test_register_refuses_a_strategy_without_a_valid_space_of_its_own(attrs, base, message):
    cls = _define(base=base, **attrs)
    with pytest.raises(StrategyDefinitionError, match=message):
        register(cls)
    assert "registry-test" not in STRATEGIES


def test_register_refuses_a_name_another_class_holds_and_accepts_a_valid_strategy():
    with pytest.raises(StrategyDefinitionError, match="'replay' is already registered by strategies.replay.Replay"):
        register(_define(name="replay", search_space={"smoothing": space.F(0.0, 0.3)}))
    assert STRATEGIES["replay"].__module__ == "strategies.replay"
    cls = _define(search_space={"smoothing": space.F(0.0, 0.3), "width": space.I(1, 8, log=True)})
    try:
        assert register(cls) is cls and STRATEGIES["registry-test"] is cls
        from search.spaces import method_space
        assert method_space("registry-test") == {"smoothing": space.F(0.0, 0.3), "width": space.I(1, 8, log=True)}
    finally:
        STRATEGIES.pop("registry-test", None)



# -- user modules -----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent

TOY = textwrap.dedent('''
    """Toy strategy of the plugin test: fine-tuning with label smoothing
    (Szegedy et al. 2016, section 7) on the cross-entropy."""
    from __future__ import annotations

    import dataclasses

    import torch.nn.functional as F

    from core import space
    from core.config import bounded
    from strategies.base import LR_SPACE, Strategy, StrategyConfig, register


    @dataclasses.dataclass
    class ToyConfig(StrategyConfig):
        smoothing: float = bounded(0.0, min=0.0, max=0.5, help="label smoothing of the cross-entropy")


    @register
    class Toy(Strategy):
        name = "{name}"
        config_class = ToyConfig
        search_space = {{"lr": LR_SPACE, "smoothing": space.F(0.0, 0.3)}}

        def losses(self, x, y, logits):
            return {{"ce": F.cross_entropy(logits, y, label_smoothing=self.config.smoothing)}}
''')


def write_toy(folder: Path, module: str = "toy_strategy", name: str = "toy", body: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{module}.py"
    path.write_text(body if body is not None else TOY.format(name=name))
    return path


@pytest.fixture
def isolated_imports(monkeypatch):
    """Undo what importing a user's module does to this process: its module,
    its folder on sys.path, its registered strategies."""
    modules, path, registry = set(sys.modules), list(sys.path), dict(STRATEGIES)
    monkeypatch.delenv("CLSEARCH_STRATEGY_MODULES", raising=False)
    yield
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    sys.path[:] = path
    STRATEGIES.clear()
    STRATEGIES.update(registry)


def test_a_module_given_by_path_or_by_name_registers_its_strategy(tmp_path, isolated_imports, monkeypatch):
    from strategies.plugins import load_cli_modules, load_strategy_modules

    path = write_toy(tmp_path / "a", module="toy_by_path", name="toy-by-path")
    assert load_strategy_modules([str(path), str(path)]) == [str(path.resolve())]  # once, as an absolute path
    assert STRATEGIES["toy-by-path"].search_space["smoothing"] == space.F(0.0, 0.3)
    write_toy(tmp_path / "b", module="toy_by_name", name="toy-by-name")
    monkeypatch.syspath_prepend(str(tmp_path / "b"))
    monkeypatch.setenv("CLSEARCH_STRATEGY_MODULES", os.pathsep.join(["toy_by_name", str(path)]))
    assert load_cli_modules(None) == ["toy_by_name", str(path.resolve())]
    assert "toy-by-name" in STRATEGIES


def test_a_search_folder_names_the_modules_it_was_run_with(tmp_path, isolated_imports):
    from strategies.plugins import requested

    (tmp_path / "search.json").write_text(json.dumps({"strategy_modules": ["/somewhere/toy.py"]}))
    assert requested(None, tmp_path) == ["/somewhere/toy.py"]
    assert requested(["other.py"], tmp_path) == ["other.py"]  # given on the command line: those instead
    assert requested(None, tmp_path / "no-search-here") == []


@pytest.mark.parametrize("body, message", [
    (None, "no such file"),
    ("x = 1\n", "registers no strategy"),
    ("def broken(:\n", "SyntaxError"),
    (TOY.format(name="toy-bad").replace('"smoothing": space.F(0.0, 0.3)', '"smothing": space.F(0.0, 0.3)'),
     "search_space names 'smothing', not fields of ToyConfig"),
])
def test_a_broken_module_is_a_one_line_usage_error(body, message, tmp_path, isolated_imports):
    from strategies.plugins import load_strategy_modules

    path = tmp_path / "toy_broken.py" if body is None else write_toy(tmp_path, module="toy_broken", body=body)
    with pytest.raises(UsageError, match=message) as info:
        load_strategy_modules([str(path)])
    assert str(info.value).startswith(f"--strategy-module {path}") and "\n" not in str(info.value)
    assert "toy-bad" not in STRATEGIES


def test_a_file_named_like_an_imported_module_is_refused(tmp_path, isolated_imports):
    from strategies.plugins import load_strategy_modules

    path = write_toy(tmp_path, module="json")
    with pytest.raises(UsageError, match="the module name 'json' is already taken"):
        load_strategy_modules([str(path)])


# -- the toy strategy through the command-line tools (Ray, subprocesses) ----------------------------

def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_AUTH_MODE"] = "disabled"
    env.pop("CL_DATA_DIR", None)
    env.pop("CLSEARCH_STRATEGY_MODULES", None)
    return env


def _cli(tmp_path: Path, script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "search" / script), *args], capture_output=True, text=True,
                          timeout=timeout, env=_env(), cwd=tmp_path)


@pytest.mark.slow
def test_a_strategy_from_a_user_module_is_searched_rerun_and_run_directly(tmp_path):
    toy = write_toy(tmp_path / "user_code")
    tiny = ["--dataset", "synthetic", "--epochs", "1"]

    # (a) a 2-trial search: the trials run in Ray workers, which import the module themselves.
    proc = _cli(tmp_path, "run.py", "--strategy-module", str(toy), "--method", "toy", "--trials", "2", *tiny,
                "--confirm-seeds", "0",
                "--cpus-per-trial", "1", "--results-root", str(tmp_path / "results"), "--name", "toy", "--no-report",
                "--min-plasticity-margin", "0")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "results" / "toy"
    spec = json.loads((out / "search.json").read_text())
    assert spec["method"] == "toy" and spec["strategy_modules"] == [str(toy.resolve())]
    assert set(spec["space"]) == {"lr", "smoothing"}
    df = pd.read_csv(out / "trials.csv")
    assert len(df) == 2 and set(df["status"]) == {"completed"}, df
    for tid in df["trial_id"]:
        r = json.loads((out / "trials" / tid / "result.json").read_text())
        assert r["method"] == "toy" and r["status"] == "completed" and len(r["acc_class_il"]) == 3
        assert 0.0 <= r["params"]["smoothing"] <= 0.3 and r["config"]["smoothing"] == r["params"]["smoothing"]

    # The search's folder is enough to rerun it: the module is read back from search.json.
    proc = _cli(tmp_path, "rerun.py", str(out), "--pick", "front", "--no-baselines", "--quiet")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "toy" in (out / "final_table.md").read_text()
    # ...and to resume it: the driver knows "toy" again before it compares the options
    # (here deliberately different ones, so that it stops before starting Ray).
    proc = _cli(tmp_path, "run.py", "--method", "toy", "--trials", "3", *tiny, "--confirm-seeds", "0", "--results-root",
                str(tmp_path / "results"), "--name", "toy", "--resume", timeout=120)
    assert proc.returncode == 2 and "holds a different search" in proc.stderr, proc.stderr

    # (b) a direct run of one config, no Ray.
    proc = _cli(tmp_path, "rerun.py", "--strategy-module", str(toy), "--method", "toy", "--set", "smoothing=0.1",
                *tiny, "--quiet", "--out", str(tmp_path / "direct"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "== toy seed 0" in proc.stdout
    assert "class-incremental accuracy matrix" in proc.stdout and "task-incremental accuracy matrix" in proc.stdout
    assert json.loads((tmp_path / "direct" / "seed0" / "result.json").read_text())["config"]["smoothing"] == 0.1

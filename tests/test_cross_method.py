"""One search across methods (search/run.py --method a,b,c / all).

Fast tier: the method list (parsing, ``all``, task-IL methods refused), the
per-method spaces (``--set``/``--range`` of a key only some methods have,
``METHOD.KEY``), the define-by-run sampler (each trial's config holds only its
method's keys), its warm start, the confirmation configs, the per-method view
of the trials table, and the reruns' method per row.

Slow tier: a tiny real search across finetune and replay on synthetic data:
every trial's params are its own method's, trials.csv names both methods, the
report builds with a front per method, ``--resume`` of the finished search
adds nothing, and ``rerun.py --pick front`` retrains each row as its own method.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core.config import ConfigError
from core.errors import UsageError
from core.methods import check_method_list, expand_all, parse_method_list, spec_fixed, spec_space
from core.result import METHOD_KEY, TRIAL_NUMBER_KEY


def _registry():
    import strategies

    return strategies.STRATEGIES


# ---------------------------------------------------------------- the method list

def test_method_list_parses_and_refuses_repeats_and_empty_names():
    assert parse_method_list("icarl") == ["icarl"]
    assert parse_method_list("icarl, der,replay") == ["icarl", "der", "replay"]
    with pytest.raises(UsageError, match="'der' is given twice"):
        parse_method_list("icarl,der,der")
    with pytest.raises(UsageError, match="an empty name"):
        parse_method_list("icarl,,der")
    with pytest.raises(UsageError, match="'all' stands alone"):
        parse_method_list("all,icarl")


def test_all_is_every_class_incremental_builtin_but_joint():
    methods = expand_all(["all"], _registry())
    assert "packnet" not in methods and "joint" not in methods
    assert {"icarl", "der", "replay", "finetune", "ewc", "lwf", "gem", "gdumb"} <= set(methods)
    assert expand_all(["icarl", "der"], _registry()) == ["icarl", "der"]


def test_unknown_and_task_incremental_methods_in_a_list_are_refused():
    with pytest.raises(UsageError, match="unknown method 'icarll'"):
        check_method_list(["icarl", "icarll"], _registry())
    with pytest.raises(UsageError, match="packnet is task-incremental only"):
        check_method_list(["icarl", "packnet"], _registry())
    check_method_list(["packnet"], _registry())  # alone, as today


# ---------------------------------------------------------------- spaces

def test_spaces_per_method_and_common_set():
    from search.spaces import resolve_spaces

    spaces, common, own = resolve_spaces(["finetune", "replay"], ["lr=0.01:0.5"], {"batch_size": "16"})
    assert list(spaces) == ["finetune", "replay"]
    assert set(spaces["finetune"]) == {"lr"}
    assert set(spaces["replay"]) == {"lr", "memory", "kd_weight", "temperature"}
    assert spaces["finetune"]["lr"].high == 0.5 and spaces["replay"]["lr"].high == 0.5
    assert common == {"batch_size": 16} and own == {"finetune": {}, "replay": {}}


def test_a_key_only_some_methods_have_is_refused_or_given_per_method():
    from search.spaces import resolve_spaces

    with pytest.raises(ConfigError, match=r"--set memory: only replay of the methods searched has 'memory' "
                                          r"\(finetune does not\); give it per method: --set replay.memory="):
        resolve_spaces(["finetune", "replay"], [], {"memory": "100"})
    with pytest.raises(ConfigError, match="--range memory: only icarl, replay"):
        resolve_spaces(["icarl", "finetune", "replay"], ["memory=10:100"], {})
    with pytest.raises(ConfigError, match="unknown key 'memroy'"):
        resolve_spaces(["finetune", "replay"], [], {"memroy": "100"})
    with pytest.raises(ConfigError, match="'icarl' is not one of the methods searched"):
        resolve_spaces(["finetune", "replay"], [], {"icarl.memory": "100"})
    spaces, common, own = resolve_spaces(["finetune", "replay"], ["replay.memory=10:100"], {"replay.kd_weight": "0.5"})
    assert own == {"finetune": {}, "replay": {"kd_weight": 0.5}} and common == {}
    assert "kd_weight" not in spaces["replay"] and spaces["replay"]["memory"].high == 100
    assert set(spaces["finetune"]) == {"lr"}


# ---------------------------------------------------------------- the define-by-run sampler

def _searcher(spaces, finished=None, trials=12):
    from search.searcher import FullRunOptunaSearch, make_sampler

    return FullRunOptunaSearch(method_spaces=spaces, metric=["final_acc", "forgetting"], mode=["max", "min"],
                               sampler=make_sampler(0, trials, group=True), num_tasks=3,
                               class_counts=[2, 2, 2], min_plasticity_margin=0.0, finished=finished)


def test_each_sampled_config_holds_only_its_methods_keys():
    from search.spaces import resolve_spaces

    spaces, _, _ = resolve_spaces(["finetune", "replay", "icarl"], [], {})
    searcher = _searcher(spaces)
    seen = set()
    for i in range(14):  # past the random start-up trials: TPE samples the conditional space too
        config = searcher.suggest(f"t{i}")
        method = config[METHOD_KEY]
        seen.add(method)
        assert set(config) == {METHOD_KEY, TRIAL_NUMBER_KEY, *spaces[method]}, config
        assert config[TRIAL_NUMBER_KEY] == i
        for key, dist in spaces[method].items():
            v = config[key]
            assert (v in dist.choices) if dist.type == "categorical" else dist.low <= v <= dist.high
        if i < 3:
            assert method == list(spaces)[i]  # each method once first
        searcher.on_trial_complete(f"t{i}", result={"final_acc": 0.1 * (i % 5), "forgetting": 0.05 * (i % 3),
                                                     "tasks_done": 3})
    assert seen == set(spaces)


def test_warm_start_tells_finished_trials_of_several_methods():
    from search.spaces import resolve_spaces

    spaces, _, _ = resolve_spaces(["finetune", "replay"], [], {})
    finished = [(0, {METHOD_KEY: "finetune", "lr": 0.05}, [0.3, 0.4]),
                (1, {METHOD_KEY: "replay", "lr": 0.1, "memory": 50, "kd_weight": 1.0, "temperature": 2.0}, [0.5, 0.2])]
    searcher = _searcher(spaces, finished=finished)
    trials = searcher._ot_study.trials
    assert [t.params.get("method") for t in trials] == ["finetune", "replay"]  # and no method enqueued again
    assert trials[1].params["replay/memory"] == 50
    config = searcher.suggest("new")
    assert config[TRIAL_NUMBER_KEY] == 2 and set(config) == {METHOD_KEY, TRIAL_NUMBER_KEY, *spaces[config[METHOD_KEY]]}


def test_warm_start_reads_each_records_own_method():
    from search.run import warm_start
    from search.spaces import resolve_spaces

    spaces, _, _ = resolve_spaces(["finetune", "replay"], [], {})
    metrics = {"class_il": {"final_acc": 0.5, "forgetting": 0.1}}
    done = {"a": {"method": "finetune", "params": {"lr": 0.1, "batch_size": 16}, "metrics": metrics,
                  TRIAL_NUMBER_KEY: 0},
            "b": {"method": "icarl", "params": {"lr": 0.1}, "metrics": metrics, TRIAL_NUMBER_KEY: 1}}
    out = warm_start(done, {}, ["final_acc", "forgetting"], spaces)
    assert [tuple(f[:3]) for f in out["finished"]] == [(0, {METHOD_KEY: "finetune", "lr": 0.1}, [0.5, 0.1])]


# ---------------------------------------------------------------- files: spec, confirmations, per-method view

SPEC = {"method": "finetune,replay", "methods": ["finetune", "replay"],
        "spaces": {"finetune": {"lr": {"type": "float", "low": 0.01, "high": 1.0, "log": True}},
                   "replay": {"lr": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
                              "memory": {"type": "int", "low": 10, "high": 100, "log": False}}},
        "space": {}, "fixed": {"batch_size": 16}, "fixed_by_method": {"replay": {"kd_weight": 0.5}}}


def test_spec_helpers_give_each_methods_space_and_fixed_knobs():
    assert set(spec_space(SPEC, "replay")) == {"lr", "memory"}
    assert spec_fixed(SPEC, "replay") == {"batch_size": 16, "kd_weight": 0.5}
    assert spec_fixed(SPEC, "finetune") == {"batch_size": 16}
    assert spec_fixed({"method": "icarl", "fixed": {"lr": 0.1}}, "icarl") == {"lr": 0.1}


def test_confirmation_configs_keep_the_candidates_method():
    from search.confirm import Candidate, confirmation_configs

    c = Candidate(3, "abc", {"lr": 0.2, "memory": 40, "batch_size": 16, "kd_weight": 0.5}, "replay")
    (config,) = confirmation_configs([(c, 1)], SPEC, 10)
    assert config == {"lr": 0.2, "memory": 40, METHOD_KEY: "replay", TRIAL_NUMBER_KEY: 10, "confirms": 3,
                      "confirm_seed": 1}
    single = confirmation_configs([(Candidate(1, "x", {"lr": 0.1, "memory": 5}, "icarl"), 2)],
                                  {"method": "icarl", "fixed": {"memory": 5}}, 4)
    assert METHOD_KEY not in single[0] and "memory" not in single[0]


def test_rerun_takes_each_rows_method():
    from search.rerun import row_method

    assert row_method(pd.Series({"method": "replay", "trial_id": "a"}), ["finetune", "replay"]) == "replay"
    assert row_method(pd.Series({"method": math.nan, "trial_id": "a"}), ["icarl"]) == "icarl"
    with pytest.raises(UsageError, match="not one of the search's"):
        row_method(pd.Series({"method": "der", "trial_id": "a"}), ["finetune", "replay"])


# ---------------------------------------------------------------- end to end

ROOT = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(ROOT / "search" / "run.py")]
TINY = ["--dataset", "synthetic", "--epochs", "1", "--cpus-per-trial", "1", "--min-plasticity-margin", "0",
        "--confirm-seeds", "0"]


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["RAY_AUTH_MODE"] = "disabled"
    env.pop("CL_DATA_DIR", None)
    return env


@pytest.mark.slow  # a Ray search in a subprocess, its resume, and a rerun of its front
def test_a_search_across_methods_end_to_end(tmp_path):
    args = [*RUN, *TINY, "--results-root", str(tmp_path), "--name", "cross", "--method", "finetune,replay",
            "--trials", "6", "--max-concurrent", "2", "--seed", "1"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=600, env=_env(), cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    folder = tmp_path / "cross"
    spec = json.loads((folder / "search.json").read_text())
    assert spec["methods"] == ["finetune", "replay"] and spec["method"] == "finetune,replay"
    records = [json.loads(f.read_text()) for f in sorted((folder / "trials").glob("*/result.json"))]
    assert len(records) == 6
    for r in records:
        assert r["status"] == "completed", r.get("error")
        own = set(spec["spaces"][r["method"]]) | set(spec["fixed"])
        assert set(r["params"]) == own, (r["method"], r["params"])
        assert "memory" not in r["config"] or r["method"] != "finetune"
    df = pd.read_csv(folder / "trials.csv")
    assert set(df["method"]) == {"finetune", "replay"}, df["method"].tolist()
    assert (df.loc[df["method"] == "finetune", "param.memory"].isna()).all()
    report = (folder / "report.md").read_text()
    assert "one search across methods" in report and "Combined front, class-incremental" in report
    assert "### finetune" in report and "### replay" in report

    # --resume of the finished search adds nothing
    p = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=600, env=_env(), cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert len(list((folder / "trials").glob("*/result.json"))) == 6

    # the front mixes the methods as they come; each picked row is rerun as its own method
    from analysis.results import load_search
    from search.rerun import pick_trials

    results = load_search(folder)
    front = pick_trials(results, ["front"])
    assert len(front)
    by_id = {r["trial_id"]: r["method"] for r in records}
    assert all(row["method"] == by_id[row["trial_id"]] for _, row in front.iterrows())
    p = subprocess.run([sys.executable, str(ROOT / "search" / "rerun.py"), str(folder), "--pick", "front",
                        "--seeds", "1", "--no-baselines", "--threads", "1", "--quiet"],
                       capture_output=True, text=True, timeout=600, env=_env(), cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    table = pd.read_csv(folder / "final_table.csv")
    for _, row in front.iterrows():
        label = f"{row['method']} #{int(row[TRIAL_NUMBER_KEY])} ({row['trial_id']})"
        assert label in set(table["config"]), (label, table["config"].tolist())
        assert set(table.loc[table["config"] == label, "method"]) == {row["method"]}


def test_the_cross_method_searcher_pickles():
    """Tune saves the searcher with its experiment state (pickle): the define-by-run space must survive it."""
    import pickle

    from search.spaces import resolve_spaces

    spaces, _, _ = resolve_spaces(["finetune", "replay"], [], {})
    searcher = _searcher(spaces)
    searcher.suggest("a")
    again = pickle.loads(pickle.dumps(searcher.__dict__))
    assert again["method_spaces"].keys() == spaces.keys()


# ---------------------------------------------------------------- a mixed-method front (hand-made folder)

def _mixed_folder(root: Path) -> Path:
    """The fixture search (tests/fixtures_results.py) made a search across icarl and
    finetune: trials 2 and 7 (on the front) are finetune's, with finetune's keys only."""
    from analysis.results import write_trials_csv
    from tests.fixtures_results import make_cross_method, write_search_fixture

    folder = make_cross_method(write_search_fixture(root), finetune_trials=(2, 7),
                               fixed_by_method={"icarl": {"weight_decay": 1e-5}})
    write_trials_csv(folder)
    return folder


def test_a_mixed_method_front_is_picked_with_each_rows_method(tmp_path):
    from analysis.results import load_search
    from search.rerun import pick_trials, row_method, trial_params
    from tests.fixtures_results import expected_front, trial_id

    results = load_search(_mixed_folder(tmp_path / "mixed"))
    assert results.cross_method and results.methods == ["icarl", "finetune"]
    front = pick_trials(results, ["front"])
    assert set(front["trial_id"]) == set(expected_front())
    methods = {row["trial_id"]: row_method(row, results.methods) for _, row in front.iterrows()}
    assert methods[trial_id(2)] == methods[trial_id(7)] == "finetune" and set(methods.values()) == {"icarl", "finetune"}
    for _, row in front.iterrows():  # only the row's own method's keys go to its rerun
        keys = set(trial_params(row))
        assert keys == ({"lr"} if methods[row["trial_id"]] == "finetune" else {"lr", "memory", "selection", "weight_decay"})
    subs = {s.method: s for s in results.by_method()}
    assert set(subs) == {"icarl", "finetune"} and len(subs["finetune"].trials) == 2
    assert set(subs["finetune"].spec["space"]) == {"lr"} and subs["icarl"].spec["fixed"] == {"weight_decay": 1e-5}


@pytest.mark.slow  # draws the report's figures (matplotlib): seconds
def test_the_report_of_a_mixed_method_search_shows_each_methods_front(tmp_path):
    from analysis.report import build_report

    folder = _mixed_folder(tmp_path / "mixed")
    html = build_report([folder], warn=lambda line: None)
    assert html == folder / "report.html"
    md = (folder / "report.md").read_text()
    assert md.startswith("# Search report: one search across methods (icarl, finetune)")
    assert "### Combined front, class-incremental" in md and "### Hypervolume, class-incremental" in md
    assert "icarl#1" in md and "finetune#2" in md  # trials named by method across the combined front
    assert "Memory is a budget" in md  # finetune stores 0 images, icarl 50-2000
    section = md.split("### Front per memory budget, class-incremental", 1)[1].split("\n#", 1)[0]
    assert "| ≤ 0 |" in section and "finetune#" in section and "icarl#" in section, section


def test_the_front_per_memory_budget_on_hand_made_trials():
    """(final acc, forgetting, memory) by hand: A (.30, .60, 0) finetune-like;
    B (.50, .10, 200); C (.45, .20, 200) and F (.20, .70, 500) dominated by B;
    D (.70, .15, 1000); E (.60, .05, 2000) dominates B; G (.99, 0, 0) did not
    count (not eligible). The front changes at 0, 200, 1000 and 2000 images, and
    the trials entering at their own budget (A, B, D, E) are the
    three-objective front."""
    from analysis.report import _Group, memory_budget_fronts

    rows = {"A": (.30, .60, 0), "B": (.50, .10, 200), "C": (.45, .20, 200), "F": (.20, .70, 500),
            "D": (.70, .15, 1000), "E": (.60, .05, 2000), "G": (.99, 0.0, 0)}
    table = pd.DataFrame([{"final_acc": a, "forgetting": f, "_memory": m, "_eligible": k != "G"}
                          for k, (a, f, m) in rows.items()], index=list(rows))
    g = _Group(searches=[], objectives=[("final_acc", "max"), ("forgetting", "min")], reference=[0.0, 1.0],
               table=table, note="")
    fronts = memory_budget_fronts(g)
    assert [(b, sorted(front.index)) for b, front in fronts] == [
        (0, ["A"]), (200, ["B"]), (1000, ["B", "D"]), (2000, ["D", "E"])]
    # memory as an objective already: the front is per budget by construction
    g3 = _Group(searches=[], objectives=[("final_acc", "max"), ("memory", "min")], reference=[0.0, 2200.0],
                table=table.assign(memory=table["_memory"]), note="")
    assert memory_budget_fronts(g3) == []
    # one budget only: nothing to show
    same = table.assign(_memory=200.0)
    assert memory_budget_fronts(_Group([], g.objectives, [0.0, 1.0], same, "")) == []

"""Successive halving over fidelities that keep every task (core/fidelity.py,
search/fidelity_halving.py): the rung checks, the promotion rules and the
scheduler's decisions on hand-made rungs, the rung records rebuilt from
result.json files; end to end (real Ray Tune + Optuna on a tiny synthetic
stream) that promotion is a rerun at the next fidelity with the numbers a
direct full-fidelity run gives, that stopped trials are PRUNED in the study
and off the front, and that an interrupted search resumes without losing or
retraining anything."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from core.errors import UsageError
from core.fidelity import below_top, check_rungs, describe, parse_rung
from search.fidelity_halving import FidelityHalving, promoted, rung_metrics

SENSES = ["max", "min"]  # final accuracy up, forgetting down
OBJ = [("final_acc", "max"), ("forgetting", "min")]
PROTOCOL = {"epochs": 5, "train_fraction": 1.0, "eval_fraction": 1.0}


# -- rungs from the command line ------------------------------------------------------------------

def test_rungs_parse_and_check_against_the_protocol():
    assert parse_rung("epochs=2") == {"epochs": 2}
    assert parse_rung("epochs=2, train_fraction=0.5") == {"epochs": 2, "train_fraction": 0.5}
    rungs = check_rungs([parse_rung("epochs=1,train_fraction=0.5"), parse_rung("epochs=2")], PROTOCOL)
    assert rungs == [{"epochs": 1, "train_fraction": 0.5}, {"epochs": 2}]
    assert describe(rungs[0]) == "epochs=1, train_fraction=0.5" and describe({}) == "full"


@pytest.mark.parametrize("texts, searched, message", [
    (["lr=0.1"], (), "'lr' is not a fidelity"),
    (["epochs"], (), "expected KEY=VALUE"),
    (["epochs=two"], (), "epochs must be a whole number"),
    (["epochs=1,epochs=2"], (), "epochs given twice"),
    (["epochs=6"], (), "must be 1..5"),
    (["epochs=0"], (), "must be 1..5"),
    (["train_fraction=1.5"], (), "must be in (0, 1]"),
    (["epochs=5"], (), "no cheaper than the protocol itself"),
    (["epochs=2", "epochs=2"], (), "no cheaper than epochs=2"),
    (["epochs=3", "epochs=2"], (), "cheapest first"),
    (["epochs=2", "train_fraction=0.5"], (), "cheapest first"),  # rung 1 has all the images: dearer
    (["epochs=2"], ("epochs",), "epochs is searched"),
])
def test_bad_rungs_are_one_line_errors(texts, searched, message):
    with pytest.raises(UsageError) as err:
        check_rungs([parse_rung(t) for t in texts], PROTOCOL, searched)
    assert message in str(err.value) and "\n" not in str(err.value)


# -- promotion on hand-made rungs ----------------------------------------------------------------

RUNG = {  # arrival order = insertion order
    "a": (0.90, 0.30),  # most accurate
    "b": (0.85, 0.25),
    "c": (0.80, 0.20),
    "d": (0.40, 0.02),  # low forgetting, low accuracy
    "e": (0.30, 0.40),  # dominated by everything above
    "f": (0.70, 0.35),  # dominated by a, b, c
}


def test_promotion_rules_by_hand():
    # eta 2 -> ceil(6/2) = 3 promoted.
    # first: the three most accurate.
    assert promoted(RUNG, SENSES, 2, "first") == {"a", "b", "c"}
    # pareto: front 0 = a, b, c, d; crowding keeps its ends a and d (inf), then
    # the middle point with the larger gap: b (0.90-0.80)/0.5 + (0.30-0.20)/0.28 ~ 0.56,
    # c (0.85-0.40)/0.5 + (0.25-0.02)/0.28 ~ 1.72 -> c.
    assert promoted(RUNG, SENSES, 2, "pareto") == {"a", "c", "d"}
    # split: ceil(3/2) = 2 slots by accuracy (a, b), the third by Pareto rank
    # among the rest -- the first of a, d in arrival order not yet in: d.
    assert promoted(RUNG, SENSES, 2, "split") == {"a", "b", "d"}
    # eta 3 -> 2 promoted; split: 1 by accuracy (a), 1 by Pareto rank (d).
    assert promoted(RUNG, SENSES, 3, "split") == {"a", "d"}
    assert promoted(RUNG, SENSES, 3, "first") == {"a", "b"}
    assert promoted({}, SENSES, 2, "split") == set()


def test_trials_that_did_not_learn_and_nan_rank_last_in_every_rule():
    rung = {"x": (0.95, 0.0), "y": (0.5, 0.2), "z": (math.nan, 0.1)}
    for rule in ("first", "pareto", "split"):
        # x did not learn (its ~0 forgetting would win a Pareto slot): y goes on, then z (NaN) before x.
        assert promoted(rung, SENSES, 2, rule, infeasible={"x": 0.05}) == {"y", "z"}
        assert promoted(rung, SENSES, 3, rule, infeasible={"x": 0.05}) == {"y"}


def test_scheduler_decides_asynchronously_at_each_cheap_rung():
    s = FidelityHalving(OBJ, cheap_rungs=2, num_tasks=3, eta=2, rule="first")
    go, stop = "CONTINUE", "STOP"
    m = lambda acc, fgt: {"final_acc": acc, "forgetting": fgt}  # noqa: E731
    assert s.decide("t1", 0, m(0.5, 0.1)) == go      # alone at the rung: top 1 of 1
    assert s.decide("t2", 0, m(0.4, 0.0)) == stop    # top 1 of 2 is t1
    assert s.decide("t3", 0, m(0.6, 0.3)) == go      # top 2 of 3: t3, t1
    assert s.decide("t1", 1, m(0.7, 0.1)) == go      # rung 1 has its own record
    assert s.decide("t3", 1, m(0.65, 0.1)) == stop
    assert s.decide("t1", 2, m(0.0, 1.0)) == go      # the top rung: nothing to decide
    assert s.stopped == {"t2": 0, "t3": 1}
    # A repeated report (a restarted trial) is judged on its first record.
    assert s.decide("t2", 0, m(0.99, 0.0)) == stop
    assert "rung 0: 3 recorded" in s.debug_string()


def test_scheduler_ranks_trials_that_did_not_learn_last():
    # 2 tasks of 2 classes: chance 0.5 in task-IL, floor 0.5 + 0.1.
    s = FidelityHalving(OBJ, cheap_rungs=1, num_tasks=2, eta=2, rule="pareto", class_counts=[2, 2],
                        min_plasticity_margin=0.1)
    collapsed = {"final_acc": 0.5, "forgetting": 0.0, "task_il_plasticity": 0.5}
    learned = {"final_acc": 0.45, "forgetting": 0.3, "task_il_plasticity": 0.9}
    assert s.decide("bad", 0, collapsed) == "CONTINUE"  # alone: let through (ASHA cannot call it back)
    assert s.decide("good", 0, learned) == "CONTINUE"
    assert s.decide("bad2", 0, collapsed) == "STOP"
    assert set(s.infeasible[0]) == {"bad", "bad2"}


def _record(number: int, rung: int, top: int, status: str, acc: float, fgt: float,
            history: list[dict] | None = None) -> dict:
    # The smallest result.json a rung record is read from: a 2-task run whose
    # class-IL matrix gives final accuracy acc and forgetting fgt (2 classes per task).
    from core.metrics import summarize
    first = acc + fgt / 2  # task 0 right after learning it; after task 1 it lost fgt
    M = [[first, None], [first - fgt, 2 * acc - (first - fgt)]]
    metrics = {"class_il": summarize([[first, math.nan], M[1]], [10, 10]),
               "task_il": summarize([[1.0, math.nan], [1.0, 1.0]], [10, 10])}
    return {"format": "clsearch-result/1", "trial_number": number, "status": status, "method": "replay",
            "acc_class_il": M, "acc_task_il": [[1.0, None], [1.0, 1.0]], "eval_sizes": [10, 10],
            "metrics": metrics, "timings": [], "protocol": {"seed": 0}, "stream": {"num_tasks": 2},
            "fidelity": {"rung": rung, "top": top, "overrides": {"epochs": 1} if rung < top else {},
                         "history": history or []}}


def test_rung_records_are_rebuilt_from_result_files(tmp_path):
    hist = [{"rung": 0, "overrides": {"epochs": 1}, "metrics": {"final_acc": 0.7, "forgetting": 0.1},
             "seconds": 3.0, "images_trained": 100}]
    records = {"p": _record(0, 1, 1, "completed", 0.8, 0.2, hist),   # promoted, top run done
               "s": _record(1, 0, 1, "completed", 0.5, 0.1),         # stopped at rung 0
               "r": _record(2, 0, 1, "running", 0.6, 0.0)}           # still at rung 0
    for tid, d in records.items():
        (tmp_path / "trials" / tid).mkdir(parents=True)
        (tmp_path / "trials" / tid / "result.json").write_text(json.dumps(d))
    assert rung_metrics(records["p"])[0] == hist[0]["metrics"]
    assert rung_metrics(records["s"])[0]["final_acc"] == pytest.approx(0.5)
    assert rung_metrics(records["r"]) == {}  # a run in flight has reported nothing at its rung yet
    assert below_top(records["s"]) and below_top(records["r"]) and not below_top(records["p"])
    s = FidelityHalving(OBJ, cheap_rungs=1, num_tasks=2, eta=2, rule="first", results_dir=str(tmp_path))
    assert s.seed_from_results(tmp_path) == 2
    assert s.records[0]["p"] == (0.7, 0.1)
    assert s.records[0]["s"] == pytest.approx((0.5, 0.1))
    # A newcomer at rung 0 is ranked against the rebuilt record: 2 of 3 go on.
    assert s.decide("new", 0, {"final_acc": 0.6, "forgetting": 0.0}) == "CONTINUE"
    assert s.decide("new2", 0, {"final_acc": 0.55, "forgetting": 0.0}) == "STOP"


def test_dry_run_prints_the_halving_plan(tmp_path, capsys):
    from search.run import main
    from tests.test_search import TINY
    code = main([*TINY, "--results-root", str(tmp_path), "--method", "replay", "--trials", "9", "--epochs", "3",
                 "--fidelity", "epochs=1", "--reduction-factor", "3", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert "successive halving over fidelities (1 in 3 goes on; promotion rule split):" in out
    assert "rung 1 (epochs=1): ~9 trial(s)" in out and "rung 2 (full): ~3 trial(s)" in out
    assert not list(tmp_path.iterdir())  # a dry run writes nothing


def test_live_progress_counts_every_rung_a_trial_runs(tmp_path, capsys):
    from types import SimpleNamespace

    from search.run import ProgressPrinter, planned_runs
    # 9 trials, one cheap rung, eta 3: 9 cheap runs + ~3 full ones planned.
    assert planned_runs({"trials": 9, "fidelity_rungs": [{"epochs": 1}], "reduction_factor": 3}) == 12
    assert planned_runs({"trials": 9}) == 9
    p = ProgressPrinter(9, OBJ, 2, tmp_path, planned_runs=12)
    trial = SimpleNamespace(trial_id="t0", config={})
    report = {"final_acc": 0.5, "forgetting": 0.1, "fidelity_rung": 0, "fidelity_top": 1,
              "fidelity_text": "epochs=1", "rung_done": False}
    p.task_done(trial, {**report, "tasks_done": 1})
    p.task_done(trial, {**report, "tasks_done": 2, "rung_done": True})
    p.task_done(trial, {**report, "tasks_done": 1, "fidelity_rung": 1, "fidelity_text": "full"})
    assert p.tasks_done["t0"] == 3  # 2 tasks at rung 1, then 1 at rung 2: 3 of 12 x 2
    out = capsys.readouterr().out
    assert "rung 1/2 (epochs=1) task 1/2 done" in out and "rung 1/2 (epochs=1) done: final_acc 50.0%" in out
    assert "rung 2/2 (full) task 1/2 done" in out and "search 12% done" in out
    p.started["t0"] = 0.0
    p.last["t0"] = {**report, "tasks_done": 2, "rung_done": True}  # stopped after its cheap run
    p.finished(trial, failed=False)
    assert p.truncated == 1 and p.tasks_done["t0"] == 2
    assert "stopped after rung 1/2 (epochs=1)" in capsys.readouterr().out


# -- end to end ------------------------------------------------------------------------------------

def _search(tmp_path: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    from tests.test_search import search
    return search(tmp_path, *args, timeout=timeout)


def _records(folder: Path) -> dict[str, dict]:
    return {f.parent.name: json.loads(f.read_text()) for f in (folder / "trials").glob("*/result.json")}


def _study_states(folder: Path, name: str) -> dict[int, tuple[str, list | None]]:
    import optuna

    from search.searcher import journal_storage
    study = optuna.load_study(study_name=name, storage=journal_storage(folder / "optuna-study.log"))
    return {t.number: (t.state.name, t.values) for t in study.get_trials(deepcopy=False)}


@pytest.mark.slow  # Ray search in a subprocess
def test_fidelity_search_promotes_by_rerun_and_prunes_the_rest(tmp_path):
    proc = _search(tmp_path, "--method", "replay", "--trials", "6", "--name", "sh", "--epochs", "2",
                   "--fidelity", "epochs=1", "--reduction-factor", "2", "--promote", "split",
                   "--max-concurrent", "2", "--confirm-seeds", "1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = tmp_path / "sh"
    spec = json.loads((out / "search.json").read_text())
    assert spec["fidelity_rungs"] == [{"epochs": 1}] and spec["promotion"] == "split"
    records = _records(out)
    # The front's confirmation trials (another seed of each candidate) run the protocol itself.
    confirmations = {t: d for t, d in records.items() if d.get("confirms") is not None}
    assert confirmations and all("fidelity" not in d and d["protocol"]["epochs"] == 2 and d["status"] == "completed"
                                 for d in confirmations.values())
    records = {t: d for t, d in records.items() if t not in confirmations}
    assert len(records) == 6
    top = {t: d for t, d in records.items() if d["fidelity"]["rung"] == 1}
    stopped = {t: d for t, d in records.items() if d["fidelity"]["rung"] == 0}
    assert top and stopped and len(top) + len(stopped) == 6
    # ASHA keeps the first trial at a rung: at least ceil(6 / 2) = 3 promoted in all is not
    # guaranteed asynchronously, but every promoted trial ran the cheap rung first.
    for d in top.values():
        assert d["status"] == "completed" and d["protocol"]["epochs"] == 2
        (entry,) = d["fidelity"]["history"]
        assert entry["rung"] == 0 and entry["overrides"] == {"epochs": 1} and entry["seconds"] > 0
    for d in stopped.values():
        assert d["status"] == "completed" and d["protocol"]["epochs"] == 1 and d["fidelity"]["history"] == []
    # Optuna: COMPLETE with the top rung's values, PRUNED for the stopped.
    states = _study_states(out, "sh")
    for d in top.values():
        state, values = states[d["trial_number"]]
        m = d["metrics"]["class_il"]
        assert state == "COMPLETE" and values == pytest.approx([m["final_acc"], m["forgetting"]])
    assert {states[d["trial_number"]][0] for d in stopped.values()} == {"PRUNED"}
    # The analysis: stopped trials are truncated (never on a front) with the rung named.
    from analysis.results import fidelity_ladder, load_search
    res = load_search(out)
    by_id = res.trials.set_index("trial_id")
    assert set(by_id.loc[list(stopped), "status"]) == {"truncated"}
    assert all("after fidelity rung 1 of 2 (epochs=1)" in e for e in by_id.loc[list(stopped), "error"])
    assert set(by_id.loc[list(top), "status"]) <= {"completed", "infeasible"}
    ladder = fidelity_ladder(res)  # confirmation trials are no rung's runs
    assert len(ladder) == 6 + len(top) and ladder["promoted"].sum() == len(top)
    report = (out / "report.md").read_text()
    assert "## Successive halving over fidelities" in report and "| 1 | epochs=1 | 6 | 6 |" in report
    assert "rung 1/2 (epochs=1) done" in proc.stdout and "stopped after rung 1/2 (epochs=1)" in proc.stdout

    # Promotion is a rerun: the top rung's run is what a direct run of the same
    # config at the protocol's fidelity gives, number for number.
    import strategies  # noqa: F401
    from core.protocol import StreamProtocol
    from datasets.protocol import load_stream
    from search.trainable import trial_configs
    from strategies.loop import make_strategy, run

    d = next(iter(top.values()))
    stream = load_stream(StreamProtocol.from_dict(spec["stream_protocol"]))
    strategy_params, cfg = trial_configs(d["params"], spec["loop"], threads=1, device="cpu")
    direct = run(make_strategy("replay", strategy_params, stream, cfg), stream, cfg)
    assert direct.acc_class_il == d["acc_class_il"]


@pytest.mark.slow  # Ray searches in subprocesses
def test_interrupted_fidelity_search_resumes_without_losing_anything(tmp_path):
    from tests.test_search import RUN, TINY, _env
    args = [*RUN, *TINY, "--results-root", str(tmp_path), "--method", "replay", "--trials", "5", "--name", "shr",
            "--no-report", "--max-concurrent", "1", "--epochs", "3", "--fidelity", "epochs=1",
            "--reduction-factor", "2", "--promote", "first"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
                            cwd=tmp_path, start_new_session=True)
    trials = tmp_path / "shr" / "trials"

    def ended() -> dict[str, str]:
        out = {}
        for f in trials.glob("*/result.json"):
            try:
                out[f.parent.name] = f.read_text() if json.loads(f.read_text())["status"] == "completed" else None
            except (OSError, ValueError, KeyError):
                pass
        return {k: v for k, v in out.items() if v}

    deadline = time.time() + 240
    while len(ended()) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
    before = ended()
    assert len(before) >= 2, "the search did not get going"
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
    proc.communicate(timeout=120)
    # A trial that finished its top rung is never trained again. (One completed at
    # the cheap rung may still be promoted on resume: the driver may have stopped
    # before the scheduler's decision.)
    kept = {t: text for t, text in ended().items() if json.loads(text)["fidelity"]["rung"] == 1}
    again = subprocess.run(args, capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "resuming" in again.stdout
    records = _records(tmp_path / "shr")
    assert len(records) == 5  # the requested number, no duplicates
    assert all(d["status"] == "completed" for d in records.values())
    numbers = sorted(d["trial_number"] for d in records.values())
    assert numbers == list(range(5))
    for t, text in kept.items():
        assert (trials / t / "result.json").read_text() == text
    # Every trial the study holds ended as COMPLETE (top rung) or PRUNED (stopped at rung 1).
    states = _study_states(tmp_path / "shr", "shr")
    for d in records.values():
        want = "COMPLETE" if d["fidelity"]["rung"] == 1 else "PRUNED"
        assert states[d["trial_number"]][0] == want, (d["trial_number"], states)

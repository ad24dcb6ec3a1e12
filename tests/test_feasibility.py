"""core/feasibility.py on hand-made matrices: a collapsed run, a learning run, the boundary;
and one tiny search end to end (slow): trials that did not learn are marked, kept off
the front and told to Optuna as a violated constraint."""
from __future__ import annotations

import json
import math
import pickle
import subprocess

import pytest

from core.feasibility import (CONSTRAINT_KEY, DEFAULT_MARGIN, SPEC_KEY, chance_levels, check_matrix,
                              check_plasticity, check_result, margin_from_spec, plasticity_floor,
                              task_class_counts, validate_margin)

DIGITS = [2, 2, 2, 2, 2]  # digits: 10 classes in 5 tasks of 2


def _lower(value) -> list[list[float | None]]:
    """A 5 x 5 task-IL matrix with ``value(i, j)`` on and below the diagonal."""
    return [[value(i, j) if j <= i else None for j in range(5)] for i in range(5)]


def test_chance_is_one_over_the_task_classes():
    assert chance_levels(DIGITS) == pytest.approx([0.5] * 5)
    assert chance_levels([3, 1, 2]) == pytest.approx([1 / 3, 1.0, 1 / 2])
    assert plasticity_floor(DIGITS, 5, 0.1) == pytest.approx(0.6)
    assert plasticity_floor([4, 2], 1, 0.1) == pytest.approx(0.35)  # a rung after 1 task: task 0 only
    with pytest.raises(ValueError, match="positive"):
        chance_levels([2, 0])


def test_a_collapsed_run_did_not_learn():
    # One class predicted whatever the image: inside each 2-class task the argmax
    # picks the same class, right on about half the images.
    f = check_matrix(_lower(lambda i, j: 0.48), DIGITS)
    assert not f.feasible
    assert f.plasticity == pytest.approx(0.48) and f.chance == pytest.approx(0.5)
    assert f.constraint == pytest.approx(0.12) and f.constraint > 0
    assert f.reason == "did not learn: plasticity 48.0% is not 10 points above chance 50.0% (needs >= 60.0%)"


def test_a_learning_run_that_forgets_everything_is_feasible():
    # Finetuning: each task learned (95 %), then forgotten (back to guessing):
    # the worst forgetting, but it learned, so it is a real trade-off point.
    f = check_matrix(_lower(lambda i, j: 0.95 if i == j else 0.5), DIGITS)
    assert f.feasible and f.reason is None and f.constraint < 0
    assert f.plasticity == pytest.approx(0.95)


def test_the_boundary_is_feasible_and_a_hair_below_is_not():
    # Two tasks of 2 classes: chance 50 %, floor 60 % (0.5 + 0.1 in floats).
    at = check_plasticity(0.6, [2, 2], 2, margin=0.1)
    assert at.feasible and at.constraint == 0.0
    below = check_plasticity(0.6 - 1e-6, [2, 2], 2, margin=0.1)
    assert not below.feasible and below.constraint > 0
    # The same on matrices: diagonal 0.7 and 0.5 -> P = 0.6 exactly; 0.49 -> 0.595.
    assert check_matrix([[0.7, None], [0.6, 0.5]], [2, 2], margin=0.1).feasible
    assert not check_matrix([[0.7, None], [0.6, 0.49]], [2, 2], margin=0.1).feasible


def test_margin_zero_turns_the_rule_off_and_bad_margins_are_refused():
    assert check_matrix(_lower(lambda i, j: 0.3), DIGITS, margin=0).feasible
    for bad in (-0.1, 1.0, math.nan, "0.1", True):
        with pytest.raises(ValueError, match="margin"):
            validate_margin(bad)
    assert margin_from_spec({}) == DEFAULT_MARGIN  # a folder from before the rule
    assert margin_from_spec({"min_plasticity_margin": 0.0}) == 0.0
    assert margin_from_spec({"min_plasticity_margin": 0.2}) == 0.2


def test_no_plasticity_reported_is_not_learning():
    assert not check_plasticity(math.nan, DIGITS, 3).feasible


def test_result_records_use_the_task_il_matrix_and_the_tasks_done():
    rec = {"task_incremental_only": False,
           "acc_class_il": [[0.9, None, None], [0.1, 0.9, None]],     # 2 of 3 tasks, rows as wide as the stream
           "acc_task_il": [[0.5, None, None], [0.5, 0.5, None]],
           "stream": {"task_classes": [[0, 1], [2, 3], [4, 5]]}}
    f = check_result(rec)
    assert not f.feasible and f.tasks_done == 2
    assert check_result({**rec, "acc_task_il": [[0.9, None, None], [0.8, 0.9, None]]}).feasible
    # Classes per task from num_classes when task_classes is absent; nothing to judge without either.
    assert task_class_counts({"stream": {"num_classes": 7, "num_tasks": 3}}) == [3, 2, 2]
    assert check_result({**rec, "stream": {}}) is None
    assert check_result({**rec, "acc_task_il": []}) is None


@pytest.mark.slow  # a Ray search in a subprocess: ~25 s
def test_a_search_keeps_trials_that_did_not_learn_off_the_front_and_tells_optuna(tmp_path):
    """With the default margin. On the synthetic stream (3 tasks of 2 classes, 1 epoch)
    finetune at lr 5 collapses (task-IL 50 % on every task: chance) and at lr 0.05
    learns (100 %); the sampler's seed 0 draws both in its two random start-up trials."""
    import pandas as pd

    from analysis.pareto import pareto_table
    from analysis.results import load_search
    from tests.test_report import _section, _table_column
    from tests.test_search import RUN, _env

    proc = subprocess.run([*RUN, "--dataset", "synthetic", "--epochs", "1", "--cpus-per-trial", "1",
                           "--results-root", str(tmp_path), "--name", "nolearn", "--method", "finetune",
                           "--trials", "4", "--range", "lr=0.05,5", "--seed", "0", "--confirm-seeds", "0"],
                          capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = tmp_path / "nolearn"
    assert json.loads((out / "search.json").read_text())[SPEC_KEY] == DEFAULT_MARGIN
    df = pd.read_csv(out / "trials.csv", dtype={"trial_id": str, "error": str})
    collapsed, learned = df[df["param.lr"] == 5.0], df[df["param.lr"] == 0.05]
    assert len(collapsed) and len(learned) and len(collapsed) + len(learned) == 4
    assert set(collapsed["status"]) == {"infeasible"} and set(learned["status"]) == {"completed"}
    for _, row in collapsed.iterrows():
        assert row["error"].startswith("did not learn: plasticity 50.0% is not 10 points above chance 50.0%")
        record = json.loads((out / "trials" / row["trial_id"] / "result.json").read_text())
        assert record["feasible"] is False and record["infeasible_reason"] == row["error"]

    # Not on the front (the report's table), although with less forgetting than the
    # learned trials they would be there if they were eligible.
    front = _table_column(_section((out / "report.md").read_text(), "Pareto front"), "trial_id")
    assert front and set(front) <= set(learned["trial_id"])
    res = load_search(out)
    unruled = pareto_table(res.trials, res.objective_columns,
                           eligible=res.trials["status"].isin(["completed", "infeasible"]))
    assert set(unruled.loc[unruled["on_front"], "trial_id"]) & set(collapsed["trial_id"])

    # What Optuna was told: the searcher's state as Tune saved it (Ray's
    # OptunaSearch.save pickles its __dict__: the study and Tune id -> Optuna trial).
    states = sorted((out / "tune").glob("searcher-state-*.pkl"))
    assert states, "Tune saved no searcher state"
    state = pickle.loads(states[-1].read_bytes())
    told = {tid: state["_ot_study"].trials[t.number] for tid, t in state["_ot_trials"].items()}
    assert set(told) == set(df["trial_id"])
    for tid in collapsed["trial_id"]:
        assert told[tid].constraints[CONSTRAINT_KEY] == pytest.approx(0.1)   # floor 60 % - plasticity 50 %
    for tid in learned["trial_id"]:
        assert told[tid].constraints[CONSTRAINT_KEY] <= 0


@pytest.mark.slow  # a Ray search in a subprocess
def test_a_search_where_no_trial_learned_ends_with_a_warning_and_its_report(tmp_path):
    """Every trial collapsed (finetune at lr 4.5 or 5 on the synthetic stream): the
    trials ran, so this is no 'every trial failed' error; the search writes
    trials.csv and the report, warns that there is no front, and exits 0."""
    import pandas as pd

    from tests.test_search import RUN, _env

    proc = subprocess.run([*RUN, "--dataset", "synthetic", "--epochs", "1", "--cpus-per-trial", "1",
                           "--results-root", str(tmp_path), "--name", "none", "--method", "finetune",
                           "--trials", "2", "--range", "lr=4.5,5"],
                          capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "warning: no trial learned (2 did not learn" in proc.stderr
    assert "every trial of the search failed" not in proc.stderr
    df = pd.read_csv(tmp_path / "none" / "trials.csv")
    assert list(df["status"]) == ["infeasible", "infeasible"]
    assert (tmp_path / "none" / "report.html").is_file()

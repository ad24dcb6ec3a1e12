"""Multi-objective ASHA (search/mo_asha.py) and the NSGA-II crowding distance it
ranks by (analysis/pareto.py), on hand-computed cases; the end-to-end search
with --mo-asha is in tests/test_search.py."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from core.metrics import summarize
from analysis.pareto import crowding_distance
from analysis.results import RESULT_FORMAT
from search.mo_asha import MultiObjectiveASHA, rung_tasks, survivors

SENSES = ["max", "min"]  # final accuracy up, forgetting down
OBJ = [("final_acc", "max"), ("forgetting", "min")]


def test_crowding_distance_by_hand():
    # Front 0 = the first three points (each better in one objective); the fourth
    # is dominated by (0.9, 0.3). Middle point: accuracy gap (0.9-0.6)/0.3 = 1,
    # forgetting gap (0.3-0.1)/0.2 = 1 -> 2. Extremes and a lone front: inf.
    pts = [(0.9, 0.3), (0.8, 0.2), (0.6, 0.1), (0.5, 0.3)]
    d = crowding_distance(pts, SENSES)
    assert np.isinf(d[0]) and np.isinf(d[2]) and np.isinf(d[3])
    assert d[1] == pytest.approx(2.0)
    # Two middle points: each gets its neighbours' gaps, per objective divided by the front's range.
    pts = [(0.9, 0.3), (0.85, 0.25), (0.7, 0.15), (0.6, 0.1)]
    d = crowding_distance(pts, SENSES)
    assert d[1] == pytest.approx((0.9 - 0.7) / 0.3 + (0.3 - 0.15) / 0.2)
    assert d[2] == pytest.approx((0.85 - 0.6) / 0.3 + (0.25 - 0.1) / 0.2)
    assert np.isnan(crowding_distance([(math.nan, 0.1), (0.5, 0.2)], SENSES)[0])


def test_rungs_follow_grace_and_factor():
    assert rung_tasks(5, 1, 2) == [1, 2, 4]
    assert rung_tasks(5, 2, 2) == [2, 4]
    assert rung_tasks(10, 1, 3) == [1, 3, 9]
    assert rung_tasks(3, 3, 2) == []
    with pytest.raises(ValueError):
        rung_tasks(5, 0, 2)
    with pytest.raises(ValueError):
        rung_tasks(5, 1, 1)


def test_survivors_cut_a_front_by_crowding_not_by_one_objective():
    # Four trials, eta 2 -> two go on. All of a, b, c are on the front; the cut
    # falls inside it, and crowding keeps its two ends (the best accuracy AND the
    # least forgetting), not the two most accurate points.
    records = {"a": (0.9, 0.3), "b": (0.8, 0.2), "c": (0.6, 0.1), "d": (0.5, 0.3)}
    assert survivors(records, SENSES, 2) == {"a", "c"}
    # eta 3 on 6 trials: the 2 of front 0 go on, nothing of front 1.
    records = {"a": (0.9, 0.1), "b": (0.95, 0.2), "c": (0.5, 0.3), "d": (0.4, 0.4), "e": (0.3, 0.5), "f": (0.2, 0.6)}
    assert survivors(records, SENSES, 3) == {"a", "b"}
    # A NaN vector ranks after every valid one.
    assert survivors({"a": (math.nan, 0.0), "b": (0.1, 0.9)}, SENSES, 2) == {"b"}
    assert survivors({}, SENSES, 2) == set()
    # An exact tie (both alone at an end of the front) goes to the trial that arrived first.
    assert survivors({"b": (0.5, 0.1), "a": (0.6, 0.2)}, SENSES, 2) == {"b"}


def test_decisions_are_asynchronous_successive_halving():
    s = MultiObjectiveASHA(OBJ, num_tasks=5, grace=1, eta=2)
    assert s.rungs == [1, 2, 4]
    go, stop = "CONTINUE", "STOP"
    # The first trial at a rung always goes on (nothing to compare with).
    assert s.decide("t1", 1, {"final_acc": 0.5, "forgetting": 0.0}) == go
    # A worse second trial stops (top ceil(2/2) = 1 of 2), a better third goes on.
    assert s.decide("t2", 1, {"final_acc": 0.4, "forgetting": 0.0}) == stop
    assert s.decide("t3", 1, {"final_acc": 0.7, "forgetting": 0.0}) == go
    # Between rungs and at the last task nothing is decided.
    assert s.decide("t1", 3, {"final_acc": 0.0, "forgetting": 1.0}) == go
    assert s.decide("t1", 5, {"final_acc": 0.0, "forgetting": 1.0}) == go
    # At rung 2, two trials on one front (each better in one objective): one of
    # two goes on, and the tie goes to the earlier trial.
    assert s.decide("t1", 2, {"final_acc": 0.6, "forgetting": 0.20}) == go
    assert s.decide("t3", 2, {"final_acc": 0.4, "forgetting": 0.05}) == stop
    # A third that dominates t1 is on the front with t3: 2 of 3 go on, it among them.
    assert s.decide("t4", 2, {"final_acc": 0.7, "forgetting": 0.10}) == go
    assert s.stopped == {"t2": 1, "t3": 2}
    assert s.records[1]["t2"] == (0.4, 0.0)


def _result_json(path, rows, sizes, status="running"):
    T = 4
    padded = [list(r) + [None] * (T - len(r)) for r in rows]
    path.mkdir(parents=True)
    (path / "result.json").write_text(json.dumps({
        "format": RESULT_FORMAT, "acc_class_il": padded, "acc_task_il": padded, "eval_sizes": sizes, "status": status,
        "memory_size": 40, "stream": {"num_tasks": T}}))


def test_a_resumed_scheduler_rebuilds_its_rungs_from_the_result_files(tmp_path):
    rows_a = [[0.9], [0.5, 0.8], [0.4, 0.6, 0.7]]
    rows_b = [[0.7]]
    _result_json(tmp_path / "trials" / "a", rows_a, [10, 20, 30])
    _result_json(tmp_path / "trials" / "b", rows_b, [10])
    (tmp_path / "trials" / "broken").mkdir()
    (tmp_path / "trials" / "broken" / "result.json").write_text("{ half")  # skipped, not fatal
    _result_json(tmp_path / "trials" / "old", rows_a, [10, 20, 30])
    old_file = tmp_path / "trials" / "old" / "result.json"
    old_file.write_text(old_file.read_text().replace(RESULT_FORMAT, "clsearch-result/0"))  # another version: skipped
    s = MultiObjectiveASHA(OBJ, num_tasks=4, grace=1, eta=2, results_dir=str(tmp_path))
    assert s.rungs == [1, 2]
    assert s.seed_from_results(tmp_path) == 3  # a at rungs 1 and 2, b at rung 1
    m2 = summarize(np.array([[0.9, np.nan], [0.5, 0.8]]), [10, 20])
    assert s.records[2]["a"] == (m2["final_acc"], m2["forgetting"])
    assert s.records[1] == {"a": (0.9, 0.0), "b": (0.7, 0.0)}
    # A trial arriving after the restore is compared with the rebuilt records:
    # at rung 1 it is third of three (ceil(3/2) = 2 go on) and stops.
    assert s.decide("c", 1, {"final_acc": 0.6, "forgetting": 0.0}) == "STOP"


def test_scheduler_reads_the_folder_once_on_its_first_result(tmp_path):
    _result_json(tmp_path / "trials" / "a", [[0.9]], [10])

    class Trial:
        trial_id = "z"

    s = MultiObjectiveASHA(OBJ, num_tasks=3, grace=1, eta=2, results_dir=str(tmp_path))
    assert s.records[1] == {}
    assert s.on_trial_result(None, Trial(), {"tasks_done": 1, "final_acc": 0.1, "forgetting": 0.0}) == "STOP"
    assert set(s.records[1]) == {"a", "z"}


def test_hypervolume_by_hand():
    from analysis.pareto import hypervolume
    # Accuracy up, forgetting down, reference (0, 1). One point (0.8, 0.2)
    # dominates the box 0.8 x 0.8 = 0.64.
    assert hypervolume([(0.8, 0.2)], SENSES, (0.0, 1.0)) == pytest.approx(0.64)
    # Two front points: union of boxes 0.9 x 0.7 and 0.6 x 0.9, overlap 0.6 x 0.7:
    # 0.63 + 0.54 - 0.42 = 0.75; a dominated point and a NaN add nothing.
    pts = [(0.9, 0.3), (0.6, 0.1), (0.5, 0.4), (math.nan, 0.0)]
    assert hypervolume(pts, SENSES, (0.0, 1.0)) == pytest.approx(0.75)
    # Three objectives (memory down, reference 100): two boxes 0.9*0.7*50 and
    # 0.6*0.9*80, overlap 0.6*0.7*50: 31.5 + 43.2 - 21 = 53.7.
    pts3 = [(0.9, 0.3, 50), (0.6, 0.1, 20)]
    assert hypervolume(pts3, ["max", "min", "min"], (0.0, 1.0, 100)) == pytest.approx(53.7)
    # Points not better than the reference count for nothing; a bad reference is refused.
    assert hypervolume([(0.5, 1.2)], SENSES, (0.0, 1.0)) == 0.0
    with pytest.raises(ValueError):
        hypervolume(pts, SENSES, (0.0,))


def test_replay_of_a_full_search_applies_the_scheduler_in_simulated_time():
    """bench/early_stopping_replay.py on four hand-made trials, one slot, 3 tasks,
    rungs at 1 and 2 tasks: A passes both rungs (first there); B is below A
    at rung 1; C beats A at rung 1 and dominates it at rung 2 (0.675 accuracy,
    0.05 forgetting against 0.5, 0.1); D is last at rung 1 (2 of 4 go on)."""
    import importlib.util
    import types
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "early_stopping_replay.py"
    spec = importlib.util.spec_from_file_location("early_stopping_replay", path)
    replay_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(replay_mod)

    def trial(tid, rows, seconds):
        padded = [list(r) + [None] * (3 - len(r)) for r in rows]
        d = {"acc_class_il": padded, "eval_sizes": [10, 10, 10], "memory_size": 20}
        return {"id": tid, "result": d, "durations": [seconds] * 3, "images": [100] * 3}

    trials = [trial("A", [[0.5], [0.4, 0.6], [0.4, 0.5, 0.6]], 1.0),
              trial("B", [[0.3], [0.3, 0.3], [0.3, 0.3, 0.3]], 2.0),
              trial("C", [[0.7], [0.65, 0.7], [0.6, 0.6, 0.7]], 3.0),
              trial("D", [[0.2], [0.2, 0.2], [0.2, 0.2, 0.2]], 4.0)]
    res = types.SimpleNamespace(objectives=OBJ, num_tasks=3, task_incremental_only=False)
    out = replay_mod.replay(res, trials, grace=1, factor=2, slots=1)
    assert out["tasks_run"] == {"A": 3, "B": 1, "C": 3, "D": 1}
    assert out["makespan"] == pytest.approx(3 * 1.0 + 2.0 + 3 * 3.0 + 4.0)
    # Two slots: A and B start together; B reaches rung 1 after A (2 s > 1 s) and stops.
    out2 = replay_mod.replay(res, trials, grace=1, factor=2, slots=2)
    assert out2["tasks_run"]["B"] == 1 and out2["tasks_run"]["A"] == 3
    assert replay_mod.full_makespan(trials, 1) == pytest.approx(3 * (1 + 2 + 3 + 4))


def test_a_trial_that_has_not_learned_by_its_rung_ranks_below_every_one_that_has():
    # Two 2-class tasks: chance 50 %, floor 60 % of task-IL plasticity after task 1.
    s = MultiObjectiveASHA(OBJ, num_tasks=4, grace=1, eta=2, class_counts=[2, 2, 2, 2], min_plasticity_margin=0.1)
    go, stop = "CONTINUE", "STOP"
    # A learning trial arrives first and goes on; a collapsed one with a vector that
    # dominates it (nothing to forget) is stopped, not let through in its place.
    assert s.decide("learns", 1, {"final_acc": 0.6, "forgetting": 0.1, "task_il_plasticity": 0.9}) == go
    assert s.decide("collapsed", 1, {"final_acc": 0.7, "forgetting": 0.0, "task_il_plasticity": 0.5}) == stop
    assert s.infeasible[1] == {"collapsed": pytest.approx(0.1)}
    # Among trials that did not learn, the least violated ranks first.
    assert survivors({"a": (0.9, 0.0), "b": (0.1, 0.9), "c": (0.2, 0.8)}, SENSES, 2,
                     infeasible={"a": 0.3, "c": 0.05}) == {"b", "c"}
    # The rule off (margin 0): the dominating vector wins as before.
    off = MultiObjectiveASHA(OBJ, num_tasks=4, grace=1, eta=2, class_counts=[2, 2, 2, 2], min_plasticity_margin=0.0)
    assert off.decide("learns", 1, {"final_acc": 0.6, "forgetting": 0.1, "task_il_plasticity": 0.9}) == go
    assert off.decide("collapsed", 1, {"final_acc": 0.7, "forgetting": 0.0, "task_il_plasticity": 0.5}) == go

"""core/feasibility.py on hand-made matrices: a collapsed run, a learning run, the boundary."""
from __future__ import annotations

import math

import pytest

from core.feasibility import (DEFAULT_MARGIN, chance_levels, check_matrix, check_plasticity, check_result,
                              margin_from_spec, plasticity_floor, task_class_counts, validate_margin)

DIGITS = [2, 2, 2, 2, 2]  # digits: 10 classes in 5 tasks of 2


def test_chance_is_one_over_the_classes_the_argmax_ranges_over():
    assert chance_levels(DIGITS, task_incremental=False) == pytest.approx([1 / 2, 1 / 4, 1 / 6, 1 / 8, 1 / 10])
    assert chance_levels(DIGITS, task_incremental=True) == pytest.approx([0.5] * 5)
    assert chance_levels([3, 1, 2], task_incremental=False) == pytest.approx([1 / 3, 1 / 4, 1 / 6])
    # digits: C = 22.83 %, the floor 32.83 %; after 2 tasks (a rung) (50 + 25) / 2 + 10.
    assert plasticity_floor(DIGITS, 5, False, 0.1) == pytest.approx(0.22833 + 0.1, abs=1e-5)
    assert plasticity_floor(DIGITS, 2, False, 0.1) == pytest.approx(0.475)


def _collapsed() -> list[list[float | None]]:
    """The README's lr 2.8 digits trial: one class predicted throughout; it sits in task 2.
    Diagonal 0, 0, 0.48, 0, 0: plasticity 9.6 %; every row 0 except task 2's 0.48:
    final accuracy 9.6 %, forgetting 0."""
    T = 5
    R = [[None] * T for _ in range(T)]
    for i in range(T):
        for j in range(i + 1):
            R[i][j] = 0.48 if j == 2 else 0.0
    return R


def test_a_collapsed_run_did_not_learn():
    f = check_matrix(_collapsed(), DIGITS, task_incremental=False)
    assert not f.feasible
    assert f.plasticity == pytest.approx(0.096) and f.chance == pytest.approx(0.22833, abs=1e-5)
    assert f.constraint == pytest.approx(0.32833 - 0.096, abs=1e-5) and f.constraint > 0
    assert f.reason.startswith("did not learn: plasticity 9.6% is not 10 points above chance 22.8%")


def test_a_learning_run_that_forgets_everything_is_feasible():
    # Finetuning: each task learned (~95 %), then forgotten (0 %): the worst
    # forgetting, but it learned, so it is a real trade-off point.
    R = [[0.95 if i == j else (0.0 if j < i else None) for j in range(5)] for i in range(5)]
    f = check_matrix(R, DIGITS, task_incremental=False)
    assert f.feasible and f.reason is None and f.constraint < 0
    assert f.plasticity == pytest.approx(0.95)


def test_the_boundary_is_feasible_and_a_hair_below_is_not():
    # One task of 2 classes: chance 50 %, floor 60 % (0.5 + 0.1 in floats).
    at = check_plasticity(0.6, [2, 2], 1, task_incremental=False, margin=0.1)
    assert at.feasible and at.constraint == 0.0
    below = check_plasticity(0.6 - 1e-6, [2, 2], 1, task_incremental=False, margin=0.1)
    assert not below.feasible and below.constraint > 0
    # The same on a matrix: diagonal 0.6 and 0.35 -> P = 0.475 = (0.5 + 0.25) / 2 + 0.1.
    assert check_matrix([[0.6, None], [0.1, 0.35]], [2, 2], task_incremental=False, margin=0.1).feasible
    assert not check_matrix([[0.6, None], [0.1, 0.34]], [2, 2], task_incremental=False, margin=0.1).feasible


def test_task_incremental_chance_is_per_task():
    # Task-IL 55 % on 2-class tasks is only 5 points above guessing.
    R = [[0.55, None], [0.5, 0.55]]
    assert not check_matrix(R, [2, 2], task_incremental=True).feasible
    assert check_matrix(R, [2, 2], task_incremental=False).feasible  # class-IL: chance (50 + 25) / 2


def test_margin_zero_turns_the_rule_off_and_bad_margins_are_refused():
    assert check_matrix(_collapsed(), DIGITS, task_incremental=False, margin=0).feasible
    for bad in (-0.1, 1.0, math.nan, "0.1", True):
        with pytest.raises(ValueError, match="margin"):
            validate_margin(bad)
    assert margin_from_spec({}) == DEFAULT_MARGIN  # a folder from before the rule
    assert margin_from_spec({"min_plasticity_margin": 0.0}) == 0.0
    assert margin_from_spec({"min_plasticity_margin": 0.2}) == 0.2


def test_no_plasticity_reported_is_not_learning():
    assert not check_plasticity(math.nan, DIGITS, 3, task_incremental=False).feasible


def test_result_records_use_the_matrix_the_search_optimises_and_its_tasks_done():
    padded = [[0.0, None, None], [0.0, 0.0, None]]       # 2 of 3 tasks, rows as wide as the stream
    rec = {"task_incremental_only": False, "acc_class_il": padded, "acc_task_il": [[0.9, None, None], [0.9, 0.9, None]],
           "stream": {"task_classes": [[0, 1], [2, 3], [4, 5]]}}
    f = check_result(rec)
    assert not f.feasible and f.tasks_done == 2
    assert check_result({**rec, "task_incremental_only": True}).feasible
    # Classes per task from num_classes when task_classes is absent; nothing to judge without either.
    assert task_class_counts({"stream": {"num_classes": 7, "num_tasks": 3}}) == [3, 2, 2]
    assert check_result({**rec, "stream": {}}) is None
    assert check_result({**rec, "acc_class_il": []}) is None

"""Did a trial learn at all? The feasibility rule of a search (pure functions, no torch).

A multi-objective search over (final accuracy, forgetting) has a degenerate
corner: a model that collapses (too large a learning rate, say) predicts about
one class, so it has nothing to forget. Its average forgetting (Chaudhry et al.
2018, RWalk, ECCV; ``core.metrics.average_forgetting``) is ~0, the best value
there is, and no trial with real accuracy can dominate it: it lands on the
Pareto front, and TPE samples around it. Such a trial is not a trade-off, it is
a failure to learn, and the search treats it as infeasible (a violated
constraint), not as a point to optimise towards.

The rule
--------
The measure is the plasticity of the TASK-INCREMENTAL accuracy matrix, the
mean of its diagonal ``P = 1/T sum_j R_task[j, j]`` (``core.metrics.plasticity``):
the accuracy on each task right after learning it, the argmax taken inside the
task's own ``c_j`` classes. Its chance level is exact and the same for every
method and scenario: ``chance_j = 1 / c_j`` (a predictor that ignores the image
scores that, whichever class it guesses), and ``C = 1/T sum_j chance_j``. A trial
with ``T`` tasks done LEARNED when

    P >= C + margin,

and did not learn (is infeasible) otherwise. The constraint value handed to
Optuna is ``C + margin - P``: > 0 violated, <= 0 satisfied (Optuna's
convention), and its size says how far below the floor a trial is. A margin of
0 turns the rule off (every trial feasible, no constraint set), which is what a
search did before the rule existed.

Why the task-IL diagonal, not the class-IL one. In class-IL, ``R[j, j]`` is an
argmax over all ``S_j = sum_{i<=j} c_i`` classes seen so far, so uniform
guessing scores ``1/S_j``. But a class-IL learner trained on task j's data alone
is biased towards task j's classes (the recency bias of Wu et al. 2019, BiC,
CVPR, §3): a network that learned nothing about the images but only which task
is current scores ``1/c_j`` on the class-IL diagonal, and on digits
(``1/S_j`` = 50, 25, 16.7, 12.5, 10 %, mean 22.8 %) it would clear a 10-point
margin over ``1/S_j`` with its 50 %. The task-IL diagonal has no such hole, and
it also holds for task-incremental-only methods (PackNet), which have no
class-IL matrix. Class-IL R[j, j] <= task-IL R[j, j] always (a class-IL hit is a
task-IL hit), so a trial the rule accepts may still be poor in class-IL: that
is what the objectives measure; the rule only removes trials that learned
nothing.

Why an absolute margin of 10 percentage points (``DEFAULT_MARGIN``)
------------------------------------------------------------------
On the digits stream (10 classes in 5 tasks of 2) chance is 50 % on every task
and the floor 60 %. The README's first search put two collapsed iCaRL trials
(lr 1.0 and 2.8) on its front with 9.6 % final accuracy and 0 % forgetting.
Direct runs of those configs at seed 0 on the same validation split
(``search/rerun.py --method icarl --set lr=... --eval val``) give a task-IL
plasticity of 53.0 % (lr 1.0) and 49.3 % (lr 2.8): chance, to within noise
(their class-IL plasticity is 13.3 % and 9.6 %); lr 0.1 gives 94.8 %. A 10-point
margin sits between them with room on both sides (5 points would leave lr 1.0
only 2 points below the floor). It is also clear of sampling noise: digits' validation
split has ~27 images per task, so the diagonal mean of a model at chance has a
standard deviation of sqrt(0.5 * 0.5 / 27 / 5) = 4.3 points, and 10 points is
2.3 standard deviations (a guessing model passes with probability ~1 %; on
GTSRB's larger validation split, far less). A relative factor (P >= k C) was
rejected: on 2-class tasks k = 2 asks for 100 %, while on 100-class tasks it
lets a model at 2 % through; "10 more images in a hundred than guessing" means
the same on every stream. On classes of unequal size (GTSRB) a constant
predictor of a task's majority class can beat 1/c_j on that task; the margin
absorbs a moderate imbalance.

The same rule ranks MO-ASHA rungs (``search/mo_asha.py``, over the leading
k x k block of the matrix at a rung of k tasks), marks trials in the trials
table and the report (``analysis/``), and is told to Optuna by the searcher
(``search/searcher.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from core.metrics import as_matrix, plasticity

__all__ = ["DEFAULT_MARGIN", "CONSTRAINT_KEY", "SPEC_KEY", "REPORT_KEY", "Feasibility", "chance_levels",
           "plasticity_floor", "check_plasticity", "check_matrix", "check_result", "margin_from_spec",
           "validate_margin", "task_class_counts"]

DEFAULT_MARGIN = 0.10
# The name of the constraint a trial carries in Optuna (``Trial.set_constraint``).
CONSTRAINT_KEY = "did_not_learn"
# search.json's key of the margin; a folder without it is judged with DEFAULT_MARGIN.
SPEC_KEY = "min_plasticity_margin"
# The key of the task-IL plasticity in a trial's Tune reports (search/trainable.py),
# read by the searcher, the MO-ASHA scheduler and the live progress lines.
REPORT_KEY = "task_il_plasticity"
# The floor and the plasticity are means of at most a few hundred fractions:
# differences below this are float rounding, not a trial below the floor.
_ROUND = 12


@dataclass(frozen=True)
class Feasibility:
    """The rule applied to one trial after ``tasks_done`` tasks."""

    feasible: bool
    plasticity: float
    chance: float           # C: mean chance of the diagonal
    margin: float
    tasks_done: int

    @property
    def floor(self) -> float:
        return self.chance + self.margin

    @property
    def constraint(self) -> float:
        """Optuna's constraint value: > 0 when violated (``floor - plasticity``)."""
        return round(self.floor - self.plasticity, _ROUND)

    @property
    def reason(self) -> str | None:
        """One line for a report, None for a feasible trial."""
        if self.feasible:
            return None
        return (f"did not learn: plasticity {100 * self.plasticity:.1f}% is not {100 * self.margin:.0f} points "
                f"above chance {100 * self.chance:.1f}% (needs >= {100 * self.floor:.1f}%)")


def validate_margin(margin: Any) -> float:
    """``margin`` as a float in [0, 1); ValueError (one line) otherwise."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)):
        raise ValueError(f"the minimum plasticity margin must be a number, got {margin!r}")
    m = float(margin)
    if not (math.isfinite(m) and 0.0 <= m < 1.0):
        raise ValueError(f"the minimum plasticity margin must be in [0, 1) (a fraction: 0.1 = 10 points; "
                         f"0 = off), got {margin!r}")
    return m


def margin_from_spec(spec: dict[str, Any]) -> float:
    """The margin a search folder is judged with: its search.json's, or the
    default for a folder written before the rule existed."""
    value = spec.get(SPEC_KEY, DEFAULT_MARGIN) if isinstance(spec, dict) else DEFAULT_MARGIN
    return validate_margin(DEFAULT_MARGIN if value is None else value)


def chance_levels(class_counts: Sequence[int]) -> list[float]:
    """chance_j = 1 / c_j of the task-IL diagonal ``R_task[j, j]``, per task."""
    counts = [int(c) for c in class_counts]
    if not counts or any(c < 1 for c in counts):
        raise ValueError(f"class counts per task must be positive integers, got {list(class_counts)!r}")
    return [1.0 / c for c in counts]


def plasticity_floor(class_counts: Sequence[int], tasks_done: int, margin: float) -> float:
    """C + margin over the first ``tasks_done`` tasks."""
    chance = chance_levels(class_counts)
    if not 1 <= tasks_done <= len(chance):
        raise ValueError(f"tasks_done {tasks_done} out of range for a stream of {len(chance)} tasks")
    return float(np.mean(chance[:tasks_done])) + validate_margin(margin)


def check_plasticity(plasticity_value: float, class_counts: Sequence[int], tasks_done: int,
                     margin: float = DEFAULT_MARGIN) -> Feasibility:
    """The rule for a trial whose task-IL plasticity is P after ``tasks_done``
    tasks (what a Tune report holds, ``REPORT_KEY``). margin 0: always feasible
    (the rule is off). A non-finite P (nothing reported) is infeasible: nothing
    shows that the trial learned."""
    margin = validate_margin(margin)
    chance = plasticity_floor(class_counts, tasks_done, 0.0)
    p = float(plasticity_value)
    if margin == 0.0:
        return Feasibility(True, p, chance, 0.0, int(tasks_done))
    ok = math.isfinite(p) and round(chance + margin - p, _ROUND) <= 0.0
    return Feasibility(bool(ok), p if math.isfinite(p) else 0.0, chance, margin, int(tasks_done))


def check_matrix(R_task_il: Any, class_counts: Sequence[int], margin: float = DEFAULT_MARGIN) -> Feasibility:
    """The rule on a task-IL accuracy matrix (k x k, k tasks done; ``core.metrics.as_matrix``)."""
    M = as_matrix(R_task_il)
    return check_plasticity(plasticity(M), class_counts, M.shape[0], margin=margin)


def task_class_counts(record: dict[str, Any]) -> list[int] | None:
    """Classes per task of a result record (``stream.task_classes``); failing
    that, the stream's classes split as evenly as the stream builder splits
    them (the first tasks get the extra ones); None when the record says neither."""
    stream = record.get("stream") if isinstance(record, dict) else None
    if not isinstance(stream, dict):
        return None
    tc = stream.get("task_classes")
    if isinstance(tc, list) and tc and all(isinstance(t, list) and t for t in tc):
        return [len(t) for t in tc]
    n, t = stream.get("num_classes"), stream.get("num_tasks")
    if isinstance(n, int) and isinstance(t, int) and 1 <= t <= n:
        return [n // t + (1 if i < n % t else 0) for i in range(t)]
    return None


def check_result(record: dict[str, Any], margin: float = DEFAULT_MARGIN) -> Feasibility | None:
    """The rule on a result.json record (docs/RESULT_FORMAT.md): the leading
    k x k block of its task-IL matrix for k tasks done. None when the record
    has no usable task-IL matrix or does not say its classes per task: nothing
    to judge."""
    rows = record.get("acc_task_il") or []
    counts = task_class_counts(record)
    k = len(rows) if isinstance(rows, list) else 0
    if k == 0 or counts is None or k > len(counts):
        return None
    try:
        square = [list(r)[:k] for r in rows]  # rows are padded to the stream's width
        return check_matrix(square, counts, margin=margin)
    except (TypeError, ValueError):
        return None

"""Multi-objective early stopping over tasks: MO-ASHA.

Asynchronous successive halving (ASHA; Li et al., MLSys 2020, Alg. 2) extended
to several objectives as in MO-ASHA (Schmucker et al., "Multi-objective
Asynchronous Successive Halving", arXiv:2106.12639, 2021): the time axis is
``tasks_done``; rungs sit at ``grace * eta**i`` tasks (below the stream's last
task). When a trial reports at a rung, its objective vector joins that rung's
record, and the trial goes on only if it ranks in the top ``ceil(n / eta)`` of the
n trials recorded there. Ranking is non-dominated sorting, and inside the front
that the cut splits, the NSGA-II crowding distance (Deb et al. 2002, §III-B):
lonelier points first, so a cut front keeps its spread along the trade-off
instead of one end of it. This is the NSGA-II selection variant of MO-ASHA.

Trials that did not learn (``core.feasibility``: task-IL plasticity over the
tasks done not the margin above chance) rank below every trial that did, at
every rung, whatever their objective vectors: a collapsed model's ~0 forgetting
would otherwise put it on the rung's first front and keep it running while a
learning trial is stopped. Among themselves they rank by how far below the
floor they are (least first), as Optuna's constrained TPE ranks infeasible
trials (search/searcher.py). They also do not enter the non-dominated sorting
of the feasible trials, so they cannot push one of those to a later front.

Why a separate scheduler: Ray's ``ASHAScheduler`` refuses metric lists, and a scalarised objective would decide in advance where on the
stability-plasticity trade-off the survivors lie.

What the rest of the harness does with a stopped trial: its result.json says it
stopped after k tasks, Optuna is told PRUNED (search/searcher.py), the report
lists it as truncated and never puts it on a front (analysis/pareto.py).

Resume: Tune does not save a scheduler's state in its experiment checkpoints,
so after ``--resume`` the rung records are rebuilt from the trials' result.json
files (each holds the accuracy matrix so far, and the metrics at rung k are those
of its leading k x k block: the same numbers the trial reported then).

A caveat the report repeats: at a rung of ONE task nothing can have been
forgotten yet, so that rung ranks by accuracy alone and favours plastic
configurations; ``--grace-tasks 2`` puts the first rung where forgetting exists.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from core.feasibility import REPORT_KEY, check_plasticity
from core.metrics import plasticity, summarize
from analysis.pareto import crowding_distance, front_ranks
from analysis.results import read_result, result_matrix
from core.result import metrics_key
from core.rungs import rung_tasks

__all__ = ["MultiObjectiveASHA", "RungRecords", "ranking", "rung_tasks", "survivors"]


def ranking(records: dict[str, tuple[float, ...]], senses: list[str],
            infeasible: dict[str, float] | None = None) -> list[str]:
    """Ids of ``records`` (id -> objective vector), best first: by front, then by
    crowding distance (larger first), then by the order of ``records`` (arrival
    at the rung: the earlier trial wins an exact tie, as a trial already let
    through cannot be called back). Vectors with a NaN/inf rank last.
    ``infeasible`` (id -> how far below the plasticity floor, > 0): trials that
    did not learn; they rank after all others, least violated first, and are
    left out of the sorting of the rest."""
    if not records:
        return []
    infeasible = infeasible or {}
    ids = list(records)
    bad = np.array([i in infeasible for i in ids], dtype=bool)
    points = np.array([records[i] for i in ids], dtype=float)
    points[bad] = np.nan  # out of the non-dominated sorting and the crowding of the feasible ones
    ranks = front_ranks(points, senses)
    crowd = crowding_distance(points, senses, ranks)
    big = len(ids) + 1  # after every front
    keys = [(1, infeasible[ids[n]], 0.0, n) if bad[n] else
            (0, ranks[n] if ranks[n] >= 0 else big, np.inf if np.isnan(crowd[n]) else -crowd[n], n)
            for n in range(len(ids))]
    return [ids[k[3]] for k in sorted(keys)]


def survivors(records: dict[str, tuple[float, ...]], senses: list[str], eta: int,
              infeasible: dict[str, float] | None = None) -> set[str]:
    """Ids among ``records`` that rank in the top ceil(n / eta) (``ranking``)."""
    return set(ranking(records, senses, infeasible)[:math.ceil(len(records) / eta)])


class RungRecords:
    """What an early-stopping scheduler knows at its rungs: each trial's objective
    vector there and, for trials that had not learned, how far below the
    plasticity floor they were (core/feasibility.py; off without class counts
    or with margin 0)."""

    def __init__(self, objectives: list[tuple[str, str]], rungs: list[int], eta: int,
                 class_counts: list[int] | None = None, min_plasticity_margin: float = 0.0,
                 results_dir: str | None = None) -> None:
        self.objectives = [(str(n), str(s)) for n, s in objectives]
        self.senses = [s for _, s in self.objectives]
        self.eta = int(eta)
        self.records: dict[int, dict[str, tuple[float, ...]]] = {r: {} for r in rungs}
        # rung -> {trial id: how far below the plasticity floor} of the trials that had not learned there
        self.infeasible: dict[int, dict[str, float]] = {r: {} for r in rungs}
        self.class_counts = list(class_counts) if class_counts else None
        self.margin = float(min_plasticity_margin)
        # The search folder, read once (on the first result the scheduler sees) to
        # rebuild the rung records of a resumed search: Tune does not save them.
        self.results_dir = results_dir
        self._read_disk = results_dir is None

    def vector(self, metrics: dict[str, Any]) -> tuple[float, ...]:
        out = []
        for name, _ in self.objectives:
            try:
                out.append(float(metrics.get(name, math.nan)))
            except (TypeError, ValueError):
                out.append(math.nan)
        return tuple(out)

    def violation(self, tasks_done: int, metrics: dict[str, Any]) -> float | None:
        """How far below the plasticity floor a trial is after ``tasks_done`` tasks
        (> 0), or None when it learned or the rule is off."""
        if self.margin <= 0 or not self.class_counts or not 1 <= tasks_done <= len(self.class_counts):
            return None
        try:
            p = float(metrics.get(REPORT_KEY, math.nan))
        except (TypeError, ValueError):
            p = math.nan
        verdict = check_plasticity(p, self.class_counts, tasks_done, margin=self.margin)
        return None if verdict.feasible else verdict.constraint

    def add(self, rung: int, trial_id: str, tasks_done: int, metrics: dict[str, Any]) -> bool:
        """Record a trial's metrics at ``rung`` (once: the first report stands);
        True if it was new."""
        if trial_id in self.records[rung]:
            return False
        self.records[rung][trial_id] = self.vector(metrics)
        violated = self.violation(tasks_done, metrics)
        if violated is not None:
            self.infeasible[rung][trial_id] = violated
        return True

    def rung_metrics(self, d: dict[str, Any]) -> dict[int, dict[str, Any]]:
        """rung -> the metrics a trial reported there, read back from its result.json ``d``."""
        raise NotImplementedError

    def tasks_at(self, rung: int) -> int:
        """How many tasks a trial has done when it is judged at ``rung`` (the
        did-not-learn rule's input)."""
        raise NotImplementedError

    def seed_once(self) -> None:
        """Rebuild the rung records from the search folder, on the first call only."""
        if not self._read_disk:
            self._read_disk = True
            self.seed_from_results(Path(self.results_dir))

    def seed_from_results(self, results_dir: Path) -> int:
        """Add each trial's rung records computed from its result.json; returns
        how many (trial, rung) records were added."""
        added = 0
        for path in sorted((results_dir / "trials").glob("*/result.json")):
            try:
                at_rungs = self.rung_metrics(read_result(path))
            except ValueError:  # ResultsError: unreadable, half-written or another format
                continue  # the trial reports again anyway
            for rung, metrics in at_rungs.items():
                if rung in self.records:
                    added += self.add(rung, path.parent.name, self.tasks_at(rung), metrics)
        return added


class MultiObjectiveASHA(FIFOScheduler, RungRecords):
    """MO-ASHA over ``tasks_done`` for Tune (see the module docstring).

    ``objectives``: (metric name, "max"/"min") pairs, as the trials report them.
    ``results_dir``: the search folder, read once (on the first result this
    object sees) to rebuild the rung records of a resumed search.
    ``class_counts`` (classes per task) and ``min_plasticity_margin``: the
    did-not-learn rule (core/feasibility.py); off without class counts or
    with margin 0.
    """

    def __init__(self, objectives: list[tuple[str, str]], num_tasks: int, grace: int = 1, eta: int = 2,
                 results_dir: str | None = None, task_incremental_only: bool = False,
                 class_counts: list[int] | None = None, min_plasticity_margin: float = 0.0) -> None:
        FIFOScheduler.__init__(self)
        self.rungs = rung_tasks(num_tasks, grace, eta)
        RungRecords.__init__(self, objectives, self.rungs, eta, class_counts, min_plasticity_margin, results_dir)
        self.stopped: dict[str, int] = {}  # trial id -> rung it was stopped at
        self.task_incremental_only = task_incremental_only

    def decide(self, trial_id: str, tasks_done: int, metrics: dict[str, Any]) -> str:
        """CONTINUE or STOP for a trial that has just finished ``tasks_done`` tasks."""
        if tasks_done not in self.records:
            return TrialScheduler.CONTINUE
        self.add(tasks_done, trial_id, tasks_done, metrics)
        recorded = self.records[tasks_done]
        if trial_id in survivors(recorded, self.senses, self.eta, self.infeasible[tasks_done]):
            return TrialScheduler.CONTINUE
        self.stopped[trial_id] = tasks_done
        return TrialScheduler.STOP

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self.seed_once()
        done = result.get("tasks_done")
        if done is None:
            return TrialScheduler.CONTINUE
        return self.decide(str(trial.trial_id), int(done), result)

    def rung_metrics(self, d: dict[str, Any]) -> dict[int, dict[str, Any]]:
        """The metrics a trial reported at each rung it reached, recomputed from
        its result.json ``d``: those of the leading k x k block of its matrix."""
        M = result_matrix(d, metrics_key(self.task_incremental_only))
        sizes = list(d.get("eval_sizes") or [])
        out: dict[int, dict[str, Any]] = {}
        for rung in self.rungs:
            if M is None or M.shape[0] < rung or len(sizes) < rung:
                break
            metrics: dict[str, Any] = summarize(M[:rung, :rung], sizes[:rung])
            # The rule's input, as the trial reported it (search/trainable.py).
            T = result_matrix(d, "task_il")
            metrics[REPORT_KEY] = plasticity(T[:rung, :rung]) if T is not None and T.shape[0] >= rung else math.nan
            # Memory as the file has it now (a rehearsal memory is full from the
            # first task on, so it is the same at every rung).
            metrics["memory"] = d.get("memory_size")
            out[rung] = metrics
        return out

    def tasks_at(self, rung: int) -> int:
        return rung  # a rung is a number of tasks

    def debug_string(self) -> str:
        counts = ", ".join(f"{r} task(s): {len(self.records[r])} recorded" for r in self.rungs)
        bad = sum(len(v) for v in self.infeasible.values())
        return (f"MO-ASHA (eta {self.eta}): {len(self.stopped)} stopped; rungs {counts}"
                + (f"; {bad} rung record(s) of trials that had not learned" if bad else ""))

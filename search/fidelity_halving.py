"""Asynchronous successive halving over fidelities that keep every task.

Successive halving (Jamieson & Talwalkar, AISTATS 2016), decided asynchronously
as in ASHA (Li et al., MLSys 2020, Alg. 2: a trial reaching rung k goes on if
it ranks in the top ceil(n / eta) of the n trials recorded at rung k so far).
The rungs are not task prefixes (search/mo_asha.py) but cheaper runs of the
whole task sequence (core/fidelity.py: fewer epochs per task, a share of each
class's images), so forgetting is measured at every rung. A trial runs its
configuration at rung 0, reports when that run is done, and -- if promoted --
trains it again from scratch at the next rung (promotion by rerun,
search/trainable.py), up to the search's own protocol.

Promotion rules (``--promote``), each ranking trials that did not learn
(core/feasibility.py) after every trial that did, least violated first:

- ``pareto``: MO-ASHA's NSGA-II selection (``search.mo_asha.ranking``:
  non-dominated fronts, then crowding distance);
- ``first``: the first objective alone (final accuracy by default);
- ``split``: half the slots (rounded up) by the first objective, the rest by
  the Pareto ranking of the others. Measured on GTSRB (bench/README.md, "A
  cheap fidelity that keeps every task"): two epochs per task rank iCaRL's
  final accuracy exactly but not its forgetting, which depends on how far each
  task is trained; so accuracy picks most promotions and the Pareto slots keep
  configurations from the low-forgetting end, which accuracy alone would cut.

Optuna (search/searcher.py) is told COMPLETE only for a trial that finished the
top rung, with its full-fidelity values; a trial stopped at a cheap rung is
told PRUNED; its result.json keeps the cheap run and the analysis lists it as
stopped at that rung, never on a front (analysis/results.py).

Resume: Tune does not save a scheduler, so the rung records are rebuilt from
the trials' result.json files: each holds the summaries of the rungs its trial
passed (``fidelity.history``) and its current run.
"""
from __future__ import annotations

import math
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from core.fidelity import RECORD_KEY, RUNG_DONE_KEY, RUNG_KEY, check_promotion
from search.mo_asha import RungRecords, ranking


def promoted(records: dict[str, tuple[float, ...]], senses: list[str], eta: int, rule: str,
             infeasible: dict[str, float] | None = None) -> set[str]:
    """Ids among ``records`` (id -> objective vector, in arrival order) that a
    rung promotes: ceil(n / eta) of them, chosen by ``rule`` (module docstring)."""
    keep = math.ceil(len(records) / eta)
    if not records:
        return set()
    pareto = ranking(records, senses, infeasible)
    if rule == "pareto":
        return set(pareto[:keep])
    infeasible = infeasible or {}
    sign = 1.0 if senses[0] == "max" else -1.0

    def first_key(n_id: tuple[int, str]) -> tuple:
        n, trial = n_id
        value = records[trial][0]
        if trial in infeasible:
            return (2, infeasible[trial], n)
        if not math.isfinite(value):
            return (1, 0.0, n)
        return (0, -sign * value, n)

    by_first = [t for _, t in sorted(enumerate(records), key=first_key)]
    if rule == "first":
        return set(by_first[:keep])
    chosen = set(by_first[:math.ceil(keep / 2)])
    for trial in pareto:
        if len(chosen) >= keep:
            break
        chosen.add(trial)
    return chosen


class FidelityHalving(FIFOScheduler, RungRecords):
    """ASHA over fidelity rungs for Tune (module docstring). ``cheap_rungs``:
    how many rungs lie below the search's own protocol; ``num_tasks``: the
    stream's tasks (the did-not-learn rule is judged over all of them)."""

    def __init__(self, objectives: list[tuple[str, str]], cheap_rungs: int, num_tasks: int, eta: int = 3,
                 rule: str = "split", results_dir: str | None = None, class_counts: list[int] | None = None,
                 min_plasticity_margin: float = 0.0) -> None:
        FIFOScheduler.__init__(self)
        RungRecords.__init__(self, objectives, list(range(cheap_rungs)), eta, class_counts, min_plasticity_margin,
                             results_dir)
        if eta < 2:
            raise ValueError(f"need reduction factor >= 2, got {eta}")
        self.cheap_rungs = int(cheap_rungs)
        self.num_tasks = int(num_tasks)
        self.rule = check_promotion(rule)
        self.stopped: dict[str, int] = {}  # trial id -> rung it was stopped at

    def decide(self, trial_id: str, rung: int, metrics: dict[str, Any]) -> str:
        """CONTINUE (promote to rung + 1) or STOP for a trial whose run at ``rung`` is done."""
        if rung not in self.records:
            return TrialScheduler.CONTINUE  # the top rung: nothing left to decide
        self.add(rung, trial_id, self.num_tasks, metrics)
        if trial_id in promoted(self.records[rung], self.senses, self.eta, self.rule, self.infeasible[rung]):
            self.stopped.pop(trial_id, None)
            return TrialScheduler.CONTINUE
        self.stopped[trial_id] = rung
        return TrialScheduler.STOP

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self.seed_once()
        if not result.get(RUNG_DONE_KEY) or result.get(RUNG_KEY) is None:
            return TrialScheduler.CONTINUE  # between the tasks of a run
        return self.decide(str(trial.trial_id), int(result[RUNG_KEY]), result)

    def rung_metrics(self, d: dict[str, Any]) -> dict[int, dict[str, Any]]:
        return rung_metrics(d)

    def tasks_at(self, rung: int) -> int:
        return self.num_tasks  # every rung runs the whole sequence

    def debug_string(self) -> str:
        counts = ", ".join(f"rung {r}: {len(self.records[r])} recorded" for r in self.records)
        return f"fidelity halving (eta {self.eta}, {self.rule}): {len(self.stopped)} stopped; {counts}"


def rung_metrics(d: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """rung -> the metrics its trial reported when that rung's run was done, from
    a result.json: the passed rungs' summaries, and the current run if complete."""
    from search.trainable import record_metrics

    fid = d.get(RECORD_KEY)
    if not isinstance(fid, dict):
        return {}
    out: dict[int, dict[str, Any]] = {}
    for entry in fid.get("history") or []:
        if isinstance(entry, dict) and isinstance(entry.get("rung"), int) and isinstance(entry.get("metrics"), dict):
            out[entry["rung"]] = entry["metrics"]
    if d.get("status") == "completed" and isinstance(fid.get("rung"), int):
        out[fid["rung"]] = record_metrics(d)
    return out

"""Optuna inside Ray Tune, with only COMPLETE trials told to Optuna as complete,
and trials that did not learn told as infeasible.

Ray's ``OptunaSearch.on_trial_complete`` tells Optuna "complete" with whatever a
trial reported last -- also for a trial that raised after reporting (a diverged
run) and for a trial an ASHA scheduler stopped after its first task, whose
forgetting looks perfect. Either would mislead the sampler. Here
an errored trial is told as FAIL and a truncated one (fewer tasks done than the
stream has) as PRUNED; the sampler then learns only from full runs. A trial
told once is not told again (a failed trial restarted by ``--resume``).

A trial that did not learn (``core.feasibility``: its task-IL plasticity is not
the margin above chance) has ~0 forgetting because it has nothing to forget,
and TPE would count it among the non-dominated points and sample around it.
It is told as infeasible through Optuna's own constraint mechanism: before the
trial is told, its Optuna trial gets ``set_constraint(CONSTRAINT_KEY, C + margin
- P)`` (> 0 violated). Optuna's constrained TPE (the background is c-TPE,
Watanabe & Hutter, arXiv:2211.14411; Optuna's variant, in its
``_split_trials``, differs) ranks infeasible trials after every feasible one,
least violated first, when it splits the history into the "good" and "bad"
groups whose densities it compares, so it samples away from them. (Optuna 5 deprecated the sampler's ``constraints_func`` in favour of
``Trial.set_constraint``; TPE reads ``FrozenTrial.constraints`` either way.)
Truncated trials get the constraint over the tasks they did, so a PRUNED trial
that had not learned by its rung is infeasible too. With margin 0 the rule is
off and no constraint is set.

Every trial is numbered with its Optuna trial number (``suggest`` adds it to
the trial's config under ``core.result.TRIAL_NUMBER_KEY``): the one number the
live log, result.json, trials.csv, the report, ``rerun.py --pick`` and Optuna
itself show for a trial. Trials kept from a lost Tune state are re-added to a
new study under their own numbers (numbers of trials lost with that state
become FAIL placeholders), so new trials never reuse a kept trial's number.

The sampler is TPE with ``constant_liar=True`` (pending trials count as bad
guesses, so concurrent trials spread out) and ``multivariate=True`` (knobs
such as lr and memory interact).

A search across methods (``method_spaces``: method -> its space) is one study,
define-by-run (search/spaces.py: ``define_by_run``): the method is the first
parameter, then that method's knobs under ``<method>/<knob>``; ``suggest``
hands Tune the method and its plain keys only (``decode_params``). The first
trials take each method once (enqueued; their knobs sampled as usual), so every
method is tried before TPE weighs them. The sampler
then adds ``group=True``: multivariate TPE over each group of parameters that
appear together (one group per method), as Optuna advises for conditional
spaces.
"""
from __future__ import annotations

from typing import Any, Sequence

import optuna
from ray.tune.search.optuna import OptunaSearch

from core.feasibility import CONSTRAINT_KEY, DEFAULT_MARGIN, REPORT_KEY, check_plasticity
from core.result import TRIAL_NUMBER_KEY

# A finished trial for the warm start: (its trial number or None, searched knobs, objective values).
Finished = tuple[int | None, dict[str, Any], list[float]]


class FullRunOptunaSearch(OptunaSearch):
    """``class_counts``: classes of each task of the stream (the rule's chance
    levels); ``min_plasticity_margin``: the rule's margin, 0 = off.
    ``finished``: (trial number, searched knobs, objective values) of trials
    that ended before this searcher existed (a search whose Tune state was
    lost); told to the study as COMPLETE, under their own numbers, so sampling
    goes on from them. Ray's own
    ``evaluated_rewards`` cannot do this: it passes one value, and a Pareto
    search has several."""

    def __init__(self, *args: Any, num_tasks: int, class_counts: Sequence[int] | None = None,
                 min_plasticity_margin: float = DEFAULT_MARGIN,
                 finished: list[Finished] | None = None,
                 method_spaces: dict[str, dict[str, Any]] | None = None, **kwargs: Any) -> None:
        self._finished = list(finished or [])
        # method -> its space (core.space.Dist), for a search across methods.
        self.method_spaces = method_spaces
        if method_spaces:
            from search.spaces import define_by_run
            kwargs["space"] = define_by_run(method_spaces)
        super().__init__(*args, **kwargs)
        self.num_tasks = num_tasks
        self.class_counts = list(class_counts) if class_counts is not None else None
        self.min_plasticity_margin = float(min_plasticity_margin)
        # trial id -> the constraint value told to Optuna (also in the study's
        # trials; kept here so the value survives in the searcher's saved state).
        self.constraints: dict[str, float] = {}

    def _setup_study(self, mode: Any) -> None:
        super()._setup_study(mode)
        numbered = {n: (p, v) for n, p, v in self._finished if n is not None}
        unnumbered = [(p, v) for n, p, v in self._finished if n is None]  # records from before trial numbers
        for number in range(max(numbered, default=-1) + 1):
            if number in numbered:
                params, values = numbered[number]
                self._add_complete(params, values)
            else:
                # A trial lost with Tune's state: its number stays taken.
                self._ot_study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
        for params, values in unnumbered:
            self._add_complete(params, values)
        if getattr(self, "method_spaces", None):
            # Every method once first (those no finished trial has tried yet), so
            # the sampler sees each before it models which deserves the budget;
            # the rest of each such trial is sampled as usual.
            tried = {p.get("method") for _, p, _ in self._finished}
            for method in self.method_spaces:
                if method not in tried:
                    self._ot_study.enqueue_trial({"method": method})
        self._finished = []  # once, even if the study is set up again

    def _add_complete(self, params: dict[str, Any], values: list[float]) -> None:
        distributions = self._space
        if getattr(self, "method_spaces", None):
            # A search across methods: params hold "method" and its plain keys.
            from search.spaces import encode_params
            params, distributions = encode_params(params, self.method_spaces)
        self._ot_study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, values=list(values), params=params,
            distributions=distributions))

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if isinstance(config, dict) and trial_id in self._ot_trials:
            if getattr(self, "method_spaces", None):
                from search.spaces import decode_params
                config = decode_params(self._ot_trials[trial_id].params)
            config = {**config, TRIAL_NUMBER_KEY: self._ot_trials[trial_id].number}
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = getattr(self, "_ot_trials", {}).get(trial_id)
        if ot_trial is not None and self._ot_study.trials[ot_trial.number].state.is_finished():
            # Told already: a trial that errored (a full disk) and was restarted
            # on --resume (restart_errored) ends a second time; Optuna refuses a
            # second tell of a finished trial, and the first one stands.
            return
        if not error and result is not None and trial_id in self._ot_trials:
            self._set_constraint(trial_id, result)
        if error:
            result = None
        elif result is not None and int(result.get("tasks_done", 0)) < self.num_tasks:
            result = None  # truncated: PRUNED, not complete
        super().on_trial_complete(trial_id, result=result, error=error)

    def _set_constraint(self, trial_id: str, result: dict) -> None:
        """Store the did-not-learn constraint on the Optuna trial before it is told
        (TPE reads it from the trial's system attributes when it next samples)."""
        done = int(result.get("tasks_done", 0))
        # getattr: a searcher pickled by a search from before the rule (resumed) lacks these.
        margin, counts = getattr(self, "min_plasticity_margin", 0.0), getattr(self, "class_counts", None)
        if margin <= 0 or counts is None or not 1 <= done <= len(counts):
            return
        verdict = check_plasticity(result.get(REPORT_KEY, float("nan")), counts, done, margin=margin)
        self._ot_trials[trial_id].set_constraint(CONSTRAINT_KEY, verdict.constraint)
        if hasattr(self, "constraints"):
            self.constraints[trial_id] = verdict.constraint


def make_sampler(seed: int, num_trials: int, group: bool = False, methods: int = 1) -> optuna.samplers.BaseSampler:
    """``group``: a conditional (cross-method) space -- multivariate TPE per group
    of parameters sampled together; ``methods``: how many methods it spans (the
    random start-up covers at least one trial of each)."""
    # A quarter of the budget (at most Optuna's default 10) explores at random
    # before TPE models the results.
    startup = max(2, min(10, num_trials // 4), methods)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                      n_startup_trials=startup, group=group)

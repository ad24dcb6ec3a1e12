"""Optuna inside Ray Tune, with only COMPLETE trials told to Optuna as complete.

Ray's ``OptunaSearch.on_trial_complete`` tells Optuna "complete" with whatever a
trial reported last -- also for a trial that raised after reporting (a diverged
run) and for a trial an ASHA scheduler stopped after its first task, whose
forgetting looks perfect (DESIGN §5, §9). Either would mislead the sampler. Here
an errored trial is told as FAIL and a truncated one (fewer tasks done than the
stream has) as PRUNED; the sampler then learns only from full runs. A trial
told once is not told again (a failed trial restarted by ``--resume``).

The sampler is TPE with ``constant_liar=True`` (pending trials count as bad
guesses, so concurrent trials spread out) and ``multivariate=True`` (knobs
such as lr and memory interact).
"""
from __future__ import annotations

from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch


class FullRunOptunaSearch(OptunaSearch):
    def __init__(self, *args: Any, num_tasks: int,
                 finished: list[tuple[dict[str, Any], list[float]]] | None = None, **kwargs: Any) -> None:
        # ``finished``: (searched knobs, objective values) of trials that ended
        # before this searcher existed (a search whose Tune state was lost);
        # told to the study as COMPLETE so sampling goes on from them. Ray's own
        # ``evaluated_rewards`` cannot do this: it passes one value, and a
        # Pareto search has several.
        self._finished = list(finished or [])
        super().__init__(*args, **kwargs)
        self.num_tasks = num_tasks

    def _setup_study(self, mode: Any) -> None:
        super()._setup_study(mode)
        for params, values in self._finished:
            self._ot_study.add_trial(optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE, values=list(values), params=params,
                distributions=self._space))
        self._finished = []  # once, even if the study is set up again

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = getattr(self, "_ot_trials", {}).get(trial_id)
        if ot_trial is not None and self._ot_study.trials[ot_trial.number].state.is_finished():
            # Told already: a trial that errored (a full disk) and was restarted
            # on --resume (restart_errored) ends a second time; Optuna refuses a
            # second tell of a finished trial, and the first one stands.
            return
        if error:
            result = None
        elif result is not None and int(result.get("tasks_done", 0)) < self.num_tasks:
            result = None  # truncated: PRUNED, not complete
        super().on_trial_complete(trial_id, result=result, error=error)


def make_sampler(seed: int, num_trials: int) -> optuna.samplers.BaseSampler:
    # A quarter of the budget (at most Optuna's default 10) explores at random
    # before TPE models the results.
    startup = max(2, min(10, num_trials // 4))
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                      n_startup_trials=startup)

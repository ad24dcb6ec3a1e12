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
that had not learned by its rung is infeasible too. A trial that a fidelity
scheduler (search/fidelity_halving.py) stopped after a cheap run of the whole
sequence is PRUNED too: its values are not the protocol's. With margin 0 the rule is
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

The study on disk. Given ``study_file`` (search/run.py passes
``RESULTS_DIR/optuna-study.log`` and the search's name as ``study_name``; both
are in search.json under ``optuna_study``), the study lives in an Optuna
journal file (``optuna.storages.JournalStorage`` over a ``JournalFileBackend``):
every ask, the trial's Tune id (user attribute ``trial_id``), the
did-not-learn constraint and every tell are appended to it (and fsync'd) as
they happen, so the file is the study's truth and ``optuna.load_study`` reads
it with the same trial numbers as trials.csv. Without ``study_file`` the study
is in memory, as before (a resumed search from before the file keeps that).

- ``--resume`` (Tune restores the searcher it pickled, ``OptunaSearch.save``:
  its ``__dict__``). A ``JournalStorage`` pickles as its backend only (the
  file's path) and replays the file when next read, so the restored searcher
  sees each trial once, as the file has it -- nothing is re-added from the
  pickle. ``restore`` re-opens the journal where the driver says the search
  folder is now (``set_restore_location``: it may have been moved or copied)
  and settles the trials the file holds as RUNNING that no restored Tune trial
  will finish (Optuna asked them after Tune's last saved state, and the driver
  was killed): COMPLETE with the values of their own result.json when it says
  completed, else FAIL with user attribute ``lost``.
- Lost Tune state (search/run.py runs the rest as a new Tune experiment): the
  new searcher REUSES the study (same file and name; Ray's ``_setup_study``
  calls ``create_study(load_if_exists=True)``) rather than starting one under
  another name. The kept trials are in it already, under their numbers, with
  their constraints and Tune ids; trials left RUNNING are settled as above;
  new trials are numbered after the file's last trial (a lost trial's number
  stays taken), so numbers stay unique and equal to trials.csv's. Only what the
  file lacks is added from ``finished``: a kept trial whose number is past the
  file's end (the file was set aside as unreadable, or the search started
  before the file existed) is added as COMPLETE, with FAIL placeholders for the
  numbers in between -- the same numbering an in-memory study gets.
- A journal whose last line was cut short (a full disk, a kill during an
  append) loses that one write; a journal that cannot be read at all is moved
  to ``optuna-study.log.unreadable`` and the study is rebuilt from the trials'
  records (``journal_storage``).
- Optuna never changes a finished trial: a trial told FAIL (a full disk) and
  trained again by ``--resume`` (``restart_errored``) stays FAIL in the study;
  its result.json and trials.csv say how it ended.

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

import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage
from ray.tune.search.optuna import OptunaSearch

from core.fidelity import below_top, report_below_top
from core.feasibility import CONSTRAINT_KEY, DEFAULT_MARGIN, REPORT_KEY, check_plasticity
from core.result import TRIAL_NUMBER_KEY
from search.tune_state import saved_trial_ids

TrialState = optuna.trial.TrialState
# User attributes on the study's trials: Tune's trial id, and why a trial that
# never reported is FAIL.
TRIAL_ID_ATTR = "trial_id"
LOST_ATTR = "lost"


class Finished(NamedTuple):
    """A trial that ended before this searcher existed, for the warm start."""

    number: int | None  # its trial number (None: a record from before trial numbers)
    params: dict[str, Any]  # its searched knobs
    values: list[float]  # its objective values, in the searcher's metric order
    trial_id: str | None = None  # Tune's id
    result: dict[str, Any] | None = None  # its last report (the did-not-learn constraint's input)


def finished_from_record(record: dict[str, Any], space: Sequence[str] | Mapping[str, Sequence[str]],
                         metrics: Sequence[str]) -> Finished | None:
    """A completed trial's result.json as a ``Finished`` (None when it lacks a
    searched knob or an objective value). ``space``: the searched keys, or for
    a search across methods method -> its keys (the knobs are then the record's
    method's, with ``method``; None for a method the search does not sample)."""
    import math

    from search.trainable import record_metrics

    result = record_metrics(record)
    values = [result[m] for m in metrics]
    params = record.get("params")
    keys: Sequence[str] | None = space
    if isinstance(space, Mapping):
        keys = space.get(record.get("method"))
    if keys is None or not isinstance(params, dict) or not all(k in params for k in keys) \
            or not all(map(math.isfinite, values)):
        return None
    knobs = {k: params[k] for k in keys}
    if isinstance(space, Mapping):
        knobs = {"method": record["method"], **knobs}
    number = record.get(TRIAL_NUMBER_KEY)
    return Finished(number if isinstance(number, int) and number >= 0 else None, knobs, values,
                    record.get("trial_id"), result)


def settled_from_records(results_dir: str | Path | None, space: Sequence[str] | Mapping[str, Sequence[str]],
                         metrics: Sequence[str]) -> tuple[list[Finished], set[int]]:
    """What the trials' own result.json files settle, read in one pass over
    ``results_dir/trials``: the trials completed at the top fidelity (as
    ``Finished``; confirmation trials aside: other seeds of front candidates,
    search/confirm.py, are not samples of the sampler and never go to the
    study), and the numbers of the trials completed at a cheap fidelity rung
    (search/fidelity_halving.py stopped them there: PRUNED in the study)."""
    if not results_dir:
        return [], set()
    from core.result import CONFIRMS_KEY
    from search.trainable import record_on_disk

    finished, pruned = [], set()
    for f in sorted((Path(results_dir) / "trials").glob("*/result.json")):
        record = record_on_disk(f)
        if record.get("status") != "completed":
            continue
        if below_top(record):
            number = record.get(TRIAL_NUMBER_KEY)
            if isinstance(number, int):
                pruned.add(number)
        elif record.get(CONFIRMS_KEY) is None:
            done = finished_from_record(record, space, metrics)
            if done is not None:
                finished.append(done)
    return finished, pruned


def journal_storage(path: str | Path) -> JournalStorage:
    """An Optuna journal storage on ``path`` (created if absent).

    A last line cut short (no newline: a full disk or a kill during an append)
    is dropped -- that write did not happen, and the next append would
    otherwise glue onto it and make the file unreadable. A file that still
    cannot be read is moved aside (``NAME.unreadable``, ``.unreadable.2``, ...)
    and an empty one started; the caller rebuilds what it knows."""
    path = Path(path)
    drop_torn_tail(path)
    try:
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 -- Optuna's replay raises ValueError, KeyError, ...
        target, n = path.with_name(path.name + ".unreadable"), 1
        while target.exists():
            n += 1
            target = path.with_name(f"{path.name}.unreadable.{n}")
        os.replace(path, target)
        print(f"the Optuna study {path} cannot be read ({type(exc).__name__}: {exc}); moved to {target.name}; "
              f"the study is rebuilt from the trials' records", flush=True)
        return JournalStorage(JournalFileBackend(str(path)))


def drop_torn_tail(path: Path) -> bool:
    """Cut a journal back to its last whole line; True if something was cut."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    if not data or data.endswith(b"\n"):
        return False
    with open(path, "r+b") as f:
        f.truncate(data.rfind(b"\n") + 1)
        f.flush()
        os.fsync(f.fileno())
    return True


# Where a searcher that Tune restores (``Tuner.restore``) finds its study and the
# trials' records: set by the driver before the restore, since the pickled
# searcher knows only where the search folder was when it started.
_restore_location: tuple[str, str | None] | None = None


def set_restore_location(results_dir: str | Path | None, study_file: str | Path | None = None) -> None:
    """The search folder and its study file that a searcher restored by Tune
    re-attaches to (None: where they were when the search started)."""
    global _restore_location
    _restore_location = None if results_dir is None else (
        str(Path(results_dir).absolute()), str(Path(study_file).absolute()) if study_file else None)


class FullRunOptunaSearch(OptunaSearch):
    """``class_counts``: classes of each task of the stream (the rule's chance
    levels); ``min_plasticity_margin``: the rule's margin, 0 = off.
    ``finished``: ``Finished`` trials (or (number, params, values) tuples) that
    ended before this searcher existed (a search whose Tune state was lost);
    whichever the study lacks is told to it as COMPLETE, under its own number,
    so sampling goes on from them. Ray's own ``evaluated_rewards`` cannot do
    this: it passes one value, and a Pareto search has several.
    ``study_file``: the journal file of the study (None: in memory);
    ``study_name`` names the study in it. ``results_dir``: the search folder,
    whose trials' records settle trials an earlier driver left running."""

    def __init__(self, *args: Any, num_tasks: int, class_counts: Sequence[int] | None = None,
                 min_plasticity_margin: float = DEFAULT_MARGIN, finished: list[Finished] | None = None,
                 study_file: str | Path | None = None, results_dir: str | Path | None = None,
                 method_spaces: dict[str, dict[str, Any]] | None = None, **kwargs: Any) -> None:
        # Set before Ray's __init__, which sets the study up (``_setup_study``).
        self._finished = [Finished(*f) for f in finished or []]
        # method -> its space (core.space.Dist), for a search across methods.
        self.method_spaces = method_spaces
        if method_spaces:
            from search.spaces import define_by_run
            kwargs["space"] = define_by_run(method_spaces)
        self.num_tasks = num_tasks
        self.class_counts = list(class_counts) if class_counts is not None else None
        self.min_plasticity_margin = float(min_plasticity_margin)
        # trial id -> the constraint value told to Optuna (also in the study's
        # trials; kept here so the value survives in the searcher's saved state).
        self.constraints: dict[str, float] = {}
        self.study_file = str(Path(study_file).absolute()) if study_file else None
        self.results_dir = str(Path(results_dir).absolute()) if results_dir else None
        if self.study_file:
            kwargs["storage"] = journal_storage(self.study_file)
        super().__init__(*args, **kwargs)

    # -- the study ---------------------------------------------------------------------------------

    def _setup_study(self, mode: Any) -> None:
        super()._setup_study(mode)  # creates the study, or loads it from the file
        self._reconcile(self._finished, pending={})
        if getattr(self, "method_spaces", None):
            # Every method once first (those no finished trial or earlier trial of
            # the study has tried yet), so the sampler sees each before it models
            # which deserves the budget; the rest of each such trial is sampled as usual.
            tried = {f.params.get("method") for f in self._finished}
            tried |= {t.params.get("method") for t in self._ot_study.get_trials(deepcopy=False)}
            for method in self.method_spaces:
                if method not in tried:
                    self._ot_study.enqueue_trial({"method": method})
        self._finished = []  # once, even if the study is set up again

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        storage = getattr(self, "_storage", None)
        if not isinstance(storage, JournalStorage):
            return  # an in-memory study: the pickle holds the whole study
        folder = getattr(self, "results_dir", None)
        study_file = getattr(self, "study_file", None) or storage._backend._file_path
        if _restore_location is not None:
            folder, study_file = _restore_location[0], _restore_location[1] or study_file
        # One storage object is shared by the study and every trial the pickle
        # holds: make it the journal at the folder's current place, read afresh.
        fresh = journal_storage(study_file)
        vars(storage).clear()
        vars(storage).update(vars(fresh))
        self.study_file, self.results_dir = study_file, folder
        self._adopt_trials_tune_resumes(folder)
        # Trials Tune restores unfinished: it goes on with them and tells them.
        pending = {t.number: (tid, t.params) for tid, t in self._ot_trials.items()
                   if tid not in self._completed_trials}
        finished, pruned = settled_from_records(folder, self._space_keys(), self._metrics())
        self._reconcile(finished, pending, pruned=pruned)

    def _adopt_trials_tune_resumes(self, folder: str | Path | None) -> None:
        """Tune snapshots its experiment and this searcher at different moments:
        a trial asked (RUNNING in the study, with its Tune id) after the
        searcher's snapshot but before the experiment's is one Tune resumes and
        the pickled searcher does not know. Adopt it, so that it is told when it
        ends instead of being settled as lost (measured under load: a Ctrl-C
        left the study's trial 3 FAIL while Tune finished it)."""
        if not folder:
            return
        known = saved_trial_ids(Path(folder) / "tune")
        for frozen in self._ot_study.get_trials(deepcopy=False):
            tid = frozen.user_attrs.get(TRIAL_ID_ATTR)
            if frozen.state == TrialState.RUNNING and tid in known and tid not in self._ot_trials:
                self._ot_trials[tid] = optuna.trial.Trial(self._ot_study, frozen._trial_id)

    def _space_keys(self) -> list[str] | dict[str, list[str]]:
        """The searched keys a finished record must hold: the space's, or across
        methods each method's own (``finished_from_record``)."""
        if getattr(self, "method_spaces", None):
            return {m: list(space) for m, space in self.method_spaces.items()}
        return list(self._space)

    def _fixed(self, params: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """A finished trial's knobs as Optuna params and their distributions (across
        methods: "method" and "<method>/<knob>", search/spaces.py ``encode_params``)."""
        if getattr(self, "method_spaces", None):
            from search.spaces import encode_params
            return encode_params(params, self.method_spaces)
        return params, self._space

    def _metrics(self) -> list[str]:
        return list(self._metric) if isinstance(self._metric, (list, tuple)) else [self._metric]

    def _reconcile(self, kept: Sequence[Finished], pending: dict[int, tuple[str, dict[str, Any]]],
                   pruned: set[int] | frozenset[int] = frozenset()) -> None:
        """Make the study agree with what ended outside it.

        ``kept``: trials known finished from their own records; ``pending``:
        trial number -> (Tune id, params) of the trials Tune will go on with.
        A trial the study holds as RUNNING that is not pending is settled:
        COMPLETE with its kept values, else FAIL (``lost``). Numbers past the
        study's last trial are filled in order: a kept trial as COMPLETE, a
        pending one asked again with its params (a study rebuilt after its file
        was unreadable), any other as a FAIL placeholder, so its number stays
        taken. Kept trials without a number are added last."""
        study = self._ot_study
        numbered = {f.number: f for f in kept if f.number is not None}
        have = study.get_trials(deepcopy=False)
        settled = {"completed": 0, "pruned": 0, "failed": 0}
        for frozen in have:
            if frozen.state != TrialState.RUNNING or frozen.number in pending:
                continue
            trial = optuna.trial.Trial(study, frozen._trial_id)
            kept_trial = numbered.get(frozen.number)
            if kept_trial is not None and frozen.params == kept_trial.params:
                self._tell_complete(trial, kept_trial)
                settled["completed"] += 1
            elif frozen.number in pruned:
                study.tell(trial, state=TrialState.PRUNED)  # stopped at a cheap fidelity rung
                settled["pruned"] += 1
            else:
                trial.set_user_attr(LOST_ATTR, "left running by a driver that stopped before Tune saved its state")
                study.tell(trial, state=TrialState.FAIL)
                settled["failed"] += 1
        if any(settled.values()):
            parts = [f"{settled['completed']} completed (from their result.json)" if settled["completed"] else "",
                     f"{settled['pruned']} pruned (stopped at a cheap fidelity rung)" if settled["pruned"] else "",
                     f"{settled['failed']} marked failed (never finished)" if settled["failed"] else ""]
            print(f"Optuna study: of the trials an earlier driver left running, {', '.join(p for p in parts if p)}",
                  flush=True)
        for number in range(len(have), max([*numbered, *pending], default=-1) + 1):
            if number in numbered:
                self._add_complete(numbered[number])
            elif number in pending:
                tid, params = pending[number]
                params, distributions = self._fixed(params) if not getattr(self, "method_spaces", None) \
                    else (params, None)
                study.enqueue_trial(params)
                trial = study.ask(fixed_distributions=distributions) if distributions else study.ask()
                trial.set_user_attr(TRIAL_ID_ATTR, tid)
                self._ot_trials[tid] = trial
            else:
                # A trial lost with Tune's state: its number stays taken.
                study.add_trial(optuna.trial.create_trial(
                    state=TrialState.FAIL, user_attrs={LOST_ATTR: "lost with Tune's saved state"}))
        for f in kept:
            if f.number is None:  # records from before trial numbers
                self._add_complete(f)

    def _add_complete(self, finished: Finished) -> None:
        """A finished trial the study lacks, added under the next number (enqueue
        + ask: the params are fixed, nothing is sampled)."""
        params, distributions = self._fixed(finished.params)
        self._ot_study.enqueue_trial(params)
        self._tell_complete(self._ot_study.ask(fixed_distributions=distributions), finished)

    def _tell_complete(self, trial: optuna.trial.Trial, finished: Finished) -> None:
        if finished.trial_id:
            trial.set_user_attr(TRIAL_ID_ATTR, finished.trial_id)
        constraint = self._constraint(finished.result) if finished.result else None
        if constraint is not None:
            trial.set_constraint(CONSTRAINT_KEY, constraint)
        self._ot_study.tell(trial, list(finished.values))

    # -- Tune's calls ------------------------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict | None:
        new = trial_id not in self._ot_trials
        config = super().suggest(trial_id)
        if isinstance(config, dict) and trial_id in self._ot_trials:
            ot_trial = self._ot_trials[trial_id]
            if new:
                ot_trial.set_user_attr(TRIAL_ID_ATTR, trial_id)
            if getattr(self, "method_spaces", None):
                from search.spaces import decode_params
                config = decode_params(ot_trial.params)
            config = {**config, TRIAL_NUMBER_KEY: ot_trial.number}
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = getattr(self, "_ot_trials", {}).get(trial_id)
        if ot_trial is not None and self._told(ot_trial.number):
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
        elif result is not None and report_below_top(result):
            result = None  # stopped at a cheap fidelity rung (search/fidelity_halving.py): PRUNED
        super().on_trial_complete(trial_id, result=result, error=error)

    def _told(self, number: int) -> bool:
        trials = self._ot_study.get_trials(deepcopy=False)
        return number < len(trials) and trials[number].state.is_finished()

    def _constraint(self, result: dict) -> float | None:
        """The did-not-learn constraint of a (last) report; None when the rule is off."""
        done = int(result.get("tasks_done", 0))
        # getattr: a searcher pickled by a search from before the rule (resumed) lacks these.
        margin, counts = getattr(self, "min_plasticity_margin", 0.0), getattr(self, "class_counts", None)
        if margin <= 0 or counts is None or not 1 <= done <= len(counts):
            return None
        return check_plasticity(result.get(REPORT_KEY, float("nan")), counts, done, margin=margin).constraint

    def _set_constraint(self, trial_id: str, result: dict) -> None:
        """Store the did-not-learn constraint on the Optuna trial before it is told
        (TPE reads it from the trial's system attributes when it next samples)."""
        constraint = self._constraint(result)
        if constraint is None:
            return
        self._ot_trials[trial_id].set_constraint(CONSTRAINT_KEY, constraint)
        if hasattr(self, "constraints"):
            self.constraints[trial_id] = constraint


def make_sampler(seed: int, num_trials: int, group: bool = False, methods: int = 1) -> optuna.samplers.BaseSampler:
    """``group``: a conditional (cross-method) space -- multivariate TPE per group
    of parameters sampled together; ``methods``: how many methods it spans (the
    random start-up covers at least one trial of each)."""
    # A quarter of the budget (at most Optuna's default 10) explores at random
    # before TPE models the results.
    startup = max(2, min(10, num_trials // 4), methods)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                      n_startup_trials=startup, group=group)

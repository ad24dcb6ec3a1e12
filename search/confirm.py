"""Confirmation trials: the search's front candidates rerun with more seeds, as trials of the study.

A search measures each configuration with one training seed, so a point can
be on the front because its seed was lucky. With ``--confirm-seeds K``
(search/run.py; default 2, 0 = off) the search ends with a confirmation phase,
also on ``--resume``:

- the candidates are the front of the search's own completed, eligible trials
  on its objectives (``analysis.results`` + ``analysis.pareto.pareto_table``;
  with ``--asha`` the front of one objective: the best trial, ties included);
- each candidate is rerun K times with the same params (searched and fixed
  knobs, loop knobs included), the same stream and validation split, and loop
  seed = the search's seed + k (k = 1..K): training noise only (initialisation,
  batch order, augmentation, exemplar sampling);
- each rerun is an ordinary trial of the search, same trainable
  (search/trainable.py), same resources, same live log: a
  ``trials/<id>/result.json`` with ``"confirms": <candidate's trial number>``
  and its own trial number after the largest one in the folder, a row of
  trials.csv with its ``seed`` and ``confirms``; it checkpoints and restarts
  like any trial;
- they run as a second Tune experiment, ``RESULTS_DIR/tune-confirm/`` (a later
  batch, e.g. after ``--resume --confirm-seeds`` with a larger K, in
  ``tune-confirm-2/`` ...), driven by ``ListSearcher``: a fixed list of configs,
  never Optuna -- a confirmation is no sample of the search space, and telling
  the sampler a configuration a second time would weigh it twice;
- resumable: a confirmation is identified by (candidate, seed); one that has a
  completed (or diverged: deterministic) record is never rerun; an interrupted
  phase is continued by ``Tuner.restore`` of its experiment (unfinished trials
  resumed from their checkpoints, errored ones restarted), and only the pairs
  no experiment holds are started anew.

``analysis/confirm.py`` then recomputes the front on the candidates' seed
means; the report shows it ("Front under seed noise") and ``rerun.py --pick
front`` reruns the confirmed front. Cost: K x (front size) more trials.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from core.methods import is_cross_method, spec_fixed
from core.result import CONFIRM_SEED_KEY, CONFIRMS_KEY, METHOD_KEY, TRIAL_NUMBER_KEY

CONFIRM_DIR = "tune-confirm"
# Statuses of a confirmation record that settle its (candidate, seed): never run again.
SETTLED = ("completed", "diverged")


class ListSearcher(Searcher):
    """Hands Tune the given configs, one per trial, in order; then FINISHED.

    Its state (the configs and how many it gave) is saved with the
    experiment, so ``Tuner.restore`` never hands out a config twice."""

    def __init__(self, configs: list[dict[str, Any]]) -> None:
        super().__init__()
        self.configs = [dict(c) for c in configs]
        self.given = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | str:
        if self.given >= len(self.configs):
            return Searcher.FINISHED
        config = dict(self.configs[self.given])
        self.given += 1
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"configs": self.configs, "given": self.given}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.configs, self.given = state["configs"], state["given"]


@dataclass
class Candidate:
    number: int
    trial_id: str
    params: dict[str, Any]
    method: str | None = None  # its result.json's method (a search across methods has several)


def _records(results_dir: Path) -> dict[str, dict[str, Any]]:
    from search.trainable import record_on_disk

    return {f.parent.name: record_on_disk(f) for f in sorted((results_dir / "trials").glob("*/result.json"))}


def candidates(results_dir: Path) -> list[Candidate]:
    """The front of the search's own completed, eligible trials (from the result files)."""
    from analysis.pareto import pareto_table
    from analysis.results import SearchResults, read_search_spec, trials_frame_from_results

    spec = read_search_spec(results_dir)
    res = SearchResults(path=results_dir, spec=spec, trials=trials_frame_from_results(results_dir))
    if res.trials.empty:
        return []
    table = pareto_table(res.trials, res.objective_columns, eligible=res.eligible)
    records = _records(results_dir)
    out = []
    for _, row in table[table["on_front"]].iterrows():
        number = row[TRIAL_NUMBER_KEY]
        record = records.get(row["trial_id"]) or {}
        params = record.get("params")
        if _missing(number) or not isinstance(params, dict):
            continue  # a record from before trial numbers: nothing to point a confirmation at
        method = record.get("method")
        out.append(Candidate(int(number), str(row["trial_id"]), params, method if isinstance(method, str) else None))
    return out


def _missing(v: Any) -> bool:
    import pandas as pd

    return v is None or bool(pd.isna(v))


def confirmation_states(results_dir: Path) -> dict[tuple[int, int], tuple[str, str]]:
    """(candidate's trial number, seed) -> (status, trial id) of every confirmation
    record; a settled record (``SETTLED``) wins over another of the same pair."""
    out: dict[tuple[int, int], tuple[str, str]] = {}
    for tid, d in _records(results_dir).items():
        confirms, seed = d.get(CONFIRMS_KEY), (d.get("protocol") or {}).get("seed")
        if not isinstance(confirms, int) or not isinstance(seed, int):
            continue
        key = (confirms, seed)
        if key not in out or (out[key][0] not in SETTLED and d.get("status") in SETTLED):
            out[key] = (str(d.get("status")), tid)
    return out


def largest_trial_number(results_dir: Path) -> int:
    numbers = [d.get(TRIAL_NUMBER_KEY) for d in _records(results_dir).values()]
    return max((n for n in numbers if isinstance(n, int)), default=-1)


def pairs(cands: list[Candidate], base_seed: int, k: int) -> list[tuple[Candidate, int]]:
    """(candidate, loop seed) of every confirmation the search asks for."""
    return [(c, base_seed + i) for c in cands for i in range(1, k + 1)]


def confirmation_configs(todo: list[tuple[Candidate, int]], spec: dict[str, Any], first_number: int) -> list[dict]:
    """The Tune configs of the confirmations ``todo``: the candidate's knobs (its
    params without the search's fixed ones, which the trainable adds back), its
    number under ``CONFIRMS_KEY``, the seed, and a new trial number each. In a
    search across methods (search.json ``methods``) also the candidate's method
    (``METHOD_KEY``), so it is rerun as the method it was."""
    cross = is_cross_method(spec)
    out = []
    for i, (c, seed) in enumerate(todo):
        fixed = spec_fixed(spec, c.method) if cross and c.method else spec.get("fixed") or {}
        knobs = {k: v for k, v in c.params.items() if k not in fixed or fixed[k] != v}
        if cross and c.method:
            knobs[METHOD_KEY] = c.method
        out.append({**knobs, TRIAL_NUMBER_KEY: first_number + i, CONFIRMS_KEY: c.number, CONFIRM_SEED_KEY: seed})
    return out


def experiment_dirs(results_dir: Path) -> list[Path]:
    """The confirmation experiments' folders, oldest first."""
    def order(p: Path) -> int:
        tail = p.name[len(CONFIRM_DIR):].lstrip("-")
        return int(tail) if tail.isdigit() else 1
    return sorted((p for p in results_dir.glob(CONFIRM_DIR + "*") if p.is_dir()
                   and (p.name == CONFIRM_DIR or p.name[len(CONFIRM_DIR) + 1:].isdigit())), key=order)


def next_experiment_name(results_dir: Path) -> str:
    dirs = experiment_dirs(results_dir)
    return CONFIRM_DIR if not dirs else f"{CONFIRM_DIR}-{len(dirs) + 1}"

"""The front under seed noise: front candidates rerun with more seeds, the front recomputed on seed means.

A search measures each configuration once, with one training seed. A point
can be on the front because that seed was lucky. ``search/run.py
--confirm-seeds K`` therefore reruns every candidate -- a trial on the front of
the search's own completed, eligible trials -- with K more loop seeds (the
search's seed + 1 .. + K) on the same validation split: the *confirmation
trials* (``confirms`` = the candidate's trial number in result.json and
trials.csv; search/confirm.py runs them). This module reads them back:

- each candidate's seeds are its own trial plus its confirmation trials that
  trained on every task (status ``completed``, or ``infeasible``: a seed on
  which the configuration did not learn is part of its noise, and its numbers
  count in the mean); failed or stopped confirmations are left out;
- per objective: the mean and the sample standard deviation (ddof 1; NaN with
  one seed) over those seeds;
- the front *after* is the Pareto front of the candidates' means (only the
  candidates: the other trials have one seed each, and the front before was
  already better than them on that seed); a candidate off it is named with
  the candidates whose means dominate it -- its dominance did not survive the
  noise.

Files only, like the rest of ``analysis``: it works on a trials table
(``analysis.results``), not on live objects.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd

from analysis.pareto import non_dominated, pareto_table
from analysis.results import CONFIRMS_COLUMN, SEED_COLUMN, SearchResults
from core.result import TRIAL_NUMBER_KEY

__all__ = ["MEAN", "STD", "has_confirmations", "seed_front", "confirmed_front", "survival_text"]

# Column suffixes of ``seed_front``'s table: "<objective column>.mean" / ".std".
MEAN, STD = ".mean", ".std"
# Statuses of a confirmation trial whose numbers count in its candidate's mean.
COUNTED = ("completed", "infeasible")


def has_confirmations(df: pd.DataFrame) -> bool:
    """Whether the trials table holds any confirmation trial (``confirms`` set)."""
    return CONFIRMS_COLUMN in df.columns and bool(df[CONFIRMS_COLUMN].notna().any())


def _dominates(a: np.ndarray, b: np.ndarray, senses: list[str]) -> bool:
    sign = np.array([1.0 if s == "max" else -1.0 for s in senses])
    qa, qb = a * sign, b * sign
    return bool(np.all(np.isfinite(qa)) and np.all(np.isfinite(qb)) and np.all(qa >= qb) and np.any(qa > qb))


def seed_front(df: pd.DataFrame, objectives: Mapping[str, str], eligible: pd.Series) -> pd.DataFrame:
    """The front under seed noise of a trials table.

    ``objectives``: trials-table column -> "max"/"min" (``SearchResults.objective_columns``);
    ``eligible``: the rows that may be on a front (``SearchResults.eligible``:
    completed trials of the search itself, confirmation trials excluded).

    Returns one row per candidate (a trial on the front of the eligible rows),
    in the front's order (best first by the first objective), with columns
    ``trial_number``, ``trial_id``, ``seeds`` (how many seeds the mean is
    over), ``seed_list`` (the loop seeds, "0, 1, 2"), ``no_learn`` (seeds on
    which it did not learn), for each objective column ``<col>.mean`` and
    ``<col>.std``, ``front_before`` (True), ``front_after`` and
    ``dominated_by`` (the trial numbers of the candidates whose means
    dominate its mean; empty on the front after).
    """
    cols = list(objectives)
    senses = [objectives[c] for c in cols]
    table = pareto_table(df, objectives, eligible=eligible)
    front = table[table["on_front"]]
    confirmations = df[df[CONFIRMS_COLUMN].notna() & df["status"].isin(COUNTED)] \
        if CONFIRMS_COLUMN in df.columns else df.iloc[0:0]
    rows = []
    for _, cand in front.iterrows():
        number = cand.get(TRIAL_NUMBER_KEY)
        mine = confirmations[confirmations[CONFIRMS_COLUMN] == number] if pd.notna(number) else confirmations.iloc[0:0]
        seeds = pd.concat([cand.to_frame().T, mine])
        row = {TRIAL_NUMBER_KEY: number, "trial_id": cand["trial_id"], "seeds": len(seeds),
               "seed_list": ", ".join("?" if pd.isna(s) else str(int(s)) for s in seeds.get(SEED_COLUMN, [])),
               "no_learn": int((seeds["status"] == "infeasible").sum())}
        for c in cols:
            values = pd.to_numeric(seeds[c], errors="coerce").astype(float).to_numpy()
            values = values[np.isfinite(values)]
            row[c + MEAN] = float(values.mean()) if len(values) else math.nan
            row[c + STD] = float(values.std(ddof=1)) if len(values) >= 2 else math.nan
        rows.append(row)
    out = pd.DataFrame(rows, columns=[TRIAL_NUMBER_KEY, "trial_id", "seeds", "seed_list", "no_learn"]
                       + [c + s for c in cols for s in (MEAN, STD)])
    means = out[[c + MEAN for c in cols]].to_numpy(dtype=float) if len(out) else np.zeros((0, len(cols)))
    out["front_before"] = True
    out["front_after"] = non_dominated(means, senses) if len(out) else []
    out["dominated_by"] = [
        [int(out.loc[j, TRIAL_NUMBER_KEY]) if pd.notna(out.loc[j, TRIAL_NUMBER_KEY]) else out.loc[j, "trial_id"]
         for j in range(len(out)) if j != i and _dominates(means[j], means[i], senses)]
        for i in range(len(out))]
    return out


def confirmed_front(results: SearchResults) -> pd.DataFrame | None:
    """``seed_front`` of a loaded search, or None when it has no confirmation trial."""
    if not has_confirmations(results.trials):
        return None
    return seed_front(results.trials, results.objective_columns, results.eligible)


def survival_text(table: pd.DataFrame) -> str:
    """"2 of 3 front points survive confirmation" for a ``seed_front`` table."""
    n, kept = len(table), int(table["front_after"].sum())
    return f"{kept} of {n} front point{'' if n == 1 else 's'} survive{'s' if n == 1 else ''} confirmation"

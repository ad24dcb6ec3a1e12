"""Pareto fronts over trial objectives (e.g. maximize final accuracy, minimize forgetting).

Dominance: after flipping the sign of every "min" column so that larger is
better everywhere, point a dominates point b when a >= b in every objective and
a > b in at least one. The front is the set of points that no point dominates.

* Exact ties: identical points do not dominate each other, so duplicates are
  either all on the front or all off it.
* Rows with a NaN or +-inf in any objective are never on the front and never
  dominate anything (they are left out of the comparison altogether).
* ``pareto_table`` additionally leaves out rows marked ineligible (failed,
  diverged or truncated trials, and trials that did not learn): their metrics
  are not comparable to those of completed trials (a trial stopped after two
  tasks, or a collapsed model, has little to forget), so they must neither be
  on the front nor push a completed trial off it.

Everything is O(N^2 K) vectorised numpy (the N x N dominance matrix is built
in row blocks), fine for the few thousand trials a search produces.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["SENSES", "non_dominated", "front_ranks", "crowding_distance", "hypervolume", "pareto_table"]

SENSES = ("max", "min")

# Rows of the dominance matrix computed per block: bounds the temporary
# block x N x K boolean arrays to a few tens of MB.
_BLOCK = 256


def _oriented(points: Any, senses: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Validate; return (Q, valid): Q is N x K with larger-is-better in every column."""
    if isinstance(senses, str) or not isinstance(senses, Sequence):
        raise ValueError(f"senses must be a list of 'max'/'min', one per objective, got {senses!r}")
    senses = list(senses)
    if not senses:
        raise ValueError("senses is empty: need at least one objective")
    unknown = [s for s in senses if s not in SENSES]
    if unknown:
        raise ValueError(f"unknown sense {unknown[0]!r}; each sense must be 'max' or 'min'")
    try:
        P = np.asarray(points, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"points must be numeric N x K, got {type(points).__name__} ({str(exc).strip()[:80]})") from None
    K = len(senses)
    if P.ndim == 1 and P.size == 0:
        P = P.reshape(0, K)
    if P.ndim != 2:
        raise ValueError(f"points must be 2-D N x K, got shape {P.shape}")
    if P.shape[1] != K:
        raise ValueError(f"points have {P.shape[1]} objectives (columns) but {K} senses were given")
    sign = np.array([1.0 if s == "max" else -1.0 for s in senses])
    Q = P * sign
    valid = np.all(np.isfinite(Q), axis=1)
    return Q, valid


def _dominance(Q: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """D[a, b] = True when valid row a dominates valid row b (Q: larger is better)."""
    N = Q.shape[0]
    D = np.zeros((N, N), dtype=bool)
    idx = np.flatnonzero(valid)
    V = Q[idx]
    for start in range(0, len(idx), _BLOCK):
        A = V[start:start + _BLOCK, None, :]           # block x 1 x K
        ge = np.all(A >= V[None, :, :], axis=2)        # block x M
        gt = np.any(A > V[None, :, :], axis=2)
        D[np.ix_(idx[start:start + _BLOCK], idx)] = ge & gt
    return D


def non_dominated(points: Any, senses: Sequence[str]) -> np.ndarray:
    """Boolean mask of the Pareto front of ``points`` (N x K array-like).

    ``senses[k]`` is "max" or "min" for column k. Rows with any NaN/inf are
    False and dominate nothing. Identical points that nothing dominates are all
    True. Raises ValueError (one line) for an unknown sense or a column count
    that does not match ``len(senses)``.
    """
    Q, valid = _oriented(points, senses)
    D = _dominance(Q, valid)
    return valid & ~D.any(axis=0)


def front_ranks(points: Any, senses: Sequence[str]) -> np.ndarray:
    """Non-dominated sorting rank of each row: 0 = the Pareto front, 1 = the
    front once rank 0 is removed, and so on (as in NSGA-II). Rows with any
    NaN/inf get -1.
    """
    Q, valid = _oriented(points, senses)
    D = _dominance(Q, valid)
    ranks = np.full(Q.shape[0], -1, dtype=int)
    # Peel fronts: a row joins the current front once every row dominating it
    # has been ranked. remaining_dominators counts those not yet ranked.
    remaining_dominators = D.sum(axis=0)
    unranked = valid.copy()
    rank = 0
    while unranked.any():
        front = unranked & (remaining_dominators == 0)
        # Dominance is a strict partial order, so some unranked row always has
        # no unranked dominator; guard against an infinite loop anyway.
        assert front.any(), "dominance relation has a cycle"
        ranks[front] = rank
        unranked &= ~front
        remaining_dominators -= D[front].sum(axis=0)
        rank += 1
    return ranks


def crowding_distance(points: Any, senses: Sequence[str], ranks: np.ndarray | None = None) -> np.ndarray:
    """NSGA-II crowding distance of each row inside its own front (Deb et al.
    2002, §III-B): per objective, sort the front, give its two extremes +inf and
    every other row the gap between its neighbours divided by the front's range;
    sum over objectives. Larger = a lonelier point, preferred when a front has
    to be cut. Rows with any NaN/inf get NaN. ``ranks``: ``front_ranks`` of the
    same points when the caller has them already.
    """
    Q, valid = _oriented(points, senses)
    if ranks is None:
        ranks = front_ranks(points, senses)
    dist = np.full(Q.shape[0], np.nan)
    dist[valid] = 0.0
    for rank in np.unique(ranks[ranks >= 0]):
        members = np.flatnonzero(ranks == rank)
        for k in range(Q.shape[1]):
            order = members[np.argsort(Q[members, k], kind="stable")]
            span = Q[order[-1], k] - Q[order[0], k]
            dist[order[0]] = dist[order[-1]] = np.inf
            if len(order) < 3 or span == 0:
                continue
            gaps = (Q[order[2:], k] - Q[order[:-2], k]) / span
            dist[order[1:-1]] += gaps
    return dist


def hypervolume(points: Any, senses: Sequence[str], reference: Sequence[float]) -> float:
    """Volume of objective space that ``points`` dominate, bounded by ``reference``
    (Zitzler & Thiele 1998, the "S metric"): one number for a whole front, larger
    = better, so two searches' fronts can be compared. ``reference`` is a point
    every useful point beats (e.g. accuracy 0 and forgetting 1); rows with NaN/inf
    or not strictly better than it in every objective add nothing.

    Exact, by slicing along the last objective (HSO, While et al. 2006): fine for
    the few objectives and few hundred points of a search.
    """
    Q, valid = _oriented(points, senses)
    sign = np.array([1.0 if s == "max" else -1.0 for s in senses])
    ref = np.asarray(reference, dtype=float)
    if ref.shape != sign.shape or not np.all(np.isfinite(ref)):
        raise ValueError(f"reference must be {len(sign)} finite numbers, got {list(reference)!r}")
    ref = ref * sign
    Q = Q[valid & np.all(Q > ref, axis=1)]
    return float(_hso(Q, ref))


def _hso(Q: np.ndarray, ref: np.ndarray) -> float:
    if len(Q) == 0:
        return 0.0
    if Q.shape[1] == 1:
        return float(Q[:, 0].max() - ref[0])
    # Slabs along the last objective, from the highest value down: in the slab
    # between the i-th and (i+1)-th highest values, exactly the first i+1 points
    # reach, so its volume is their (K-1)-dimensional hypervolume times its height.
    Q = Q[np.argsort(-Q[:, -1], kind="stable")]
    levels = np.append(Q[:, -1], ref[-1])
    total = 0.0
    for i in range(len(Q)):
        height = levels[i] - levels[i + 1]
        if height > 0:
            total += height * _hso(Q[: i + 1, :-1], ref[:-1])
    return total


def _truthy(values: np.ndarray) -> np.ndarray:
    """bool(v) per entry, with None/NaN/pd.NA counting as False."""
    return np.array([False if pd.isna(v) else bool(v) for v in values], dtype=bool)


def pareto_table(
    df: pd.DataFrame,
    objectives: Mapping[str, str],
    eligible: pd.Series | Sequence[bool] | np.ndarray | None = None,
) -> pd.DataFrame:
    """Mark the Pareto front of a table of trials.

    ``objectives`` maps column name -> "max"/"min" (in order; the first one
    sorts the output). ``eligible`` (optional, boolean, one per row; a Series
    is aligned on ``df.index``, missing/NaN meaning False) marks the rows that
    may compete: ineligible rows and rows with a non-finite objective get
    ``on_front`` False and ``front_rank`` -1 and dominate nothing.

    Returns a copy of ``df`` with boolean column ``on_front`` and integer column
    ``front_rank`` (see ``front_ranks``), sorted by rank (front first, unranked
    rows last), then best-first by each objective in turn, ties keeping their
    original order. The index is kept so rows can be mapped back.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if not isinstance(objectives, Mapping) or not objectives:
        raise ValueError("objectives must be a non-empty mapping of column -> 'max'/'min'")
    cols = list(objectives)
    senses = [objectives[c] for c in cols]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"objective column(s) {missing} not in the table (columns: {list(df.columns)})")
    try:
        P = np.column_stack([pd.to_numeric(df[c], errors="raise").to_numpy(dtype=float, na_value=np.nan)
                             for c in cols]) if len(df) else np.zeros((0, len(cols)))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"objective columns must be numeric ({str(exc).strip().splitlines()[0][:80]})") from None

    if eligible is None:
        ok = np.ones(len(df), dtype=bool)
    elif isinstance(eligible, pd.Series):
        if eligible.index.equals(df.index):        # the common case; also fine with duplicate labels
            ok = _truthy(eligible.to_numpy(dtype=object))
        else:
            extra = eligible.index.difference(df.index)
            if len(extra):
                raise ValueError(f"eligible has index labels not in df: {list(extra[:5])}")
            if not eligible.index.is_unique:
                raise ValueError("eligible has duplicate index labels and does not match df.index")
            ok = _truthy(eligible.reindex(df.index).to_numpy(dtype=object))
    else:
        arr = np.asarray(eligible, dtype=object)
        if arr.shape != (len(df),):
            raise ValueError(f"eligible must have one entry per row ({len(df)}), got shape {arr.shape}")
        ok = _truthy(arr)

    # Ineligible rows are treated exactly like rows with a NaN objective.
    ranks = front_ranks(np.where(ok[:, None], P, np.nan), senses)

    out = df.copy()
    out["front_rank"] = ranks
    out["on_front"] = ranks == 0

    # Sort: rank (unranked -1 last), then each objective best-first, NaN last.
    # np.lexsort is stable and takes its primary key last.
    sign = np.array([-1.0 if s == "max" else 1.0 for s in senses])    # ascending = best first
    keys = [np.where(np.isfinite(P[:, k]), P[:, k] * sign[k], np.inf) for k in range(len(cols))]
    rank_key = np.where(ranks >= 0, ranks, np.iinfo(np.int64).max)
    order = np.lexsort(keys[::-1] + [rank_key])
    return out.iloc[order]

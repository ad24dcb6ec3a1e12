"""Continual-learning metrics: pure functions of an accuracy matrix.

Notation. ``R`` is a T x T matrix; ``R[i, j]`` is the accuracy
(a fraction in [0, 1]) on task j's eval data after training through task i,
0-based. Entries above the diagonal (j > i: tasks not yet seen) are ``None`` /
NaN and are never read. ``n_j`` (``eval_sizes``) is the number of eval samples
of task j. A trial that stopped after k tasks has a k x k matrix, so ``T`` below
is always "number of tasks completed".

Definitions (the 1-based formulas of the papers, rewritten 0-based):

* final accuracy, macro (Lopez-Paz & Ranzato 2017, GEM, "ACC"):
      ACC = 1/T * sum_{j=0}^{T-1} R[T-1, j]
* pooled (micro) accuracy at step t, on all eval samples seen so far:
      A_t = sum_{j<=t} n_j R[t, j] / sum_{j<=t} n_j
  equals the macro mean when all n_j are equal; differs on GTSRB, whose
  classes (and hence tasks) are imbalanced.
* average incremental accuracy (Rebuffi et al. 2017, iCaRL, CVPR; the mean of
  the points of its "accuracy on all classes seen so far" curve):
      AIA = 1/T * sum_{t=0}^{T-1} A_t          (first step included)
* average forgetting (Chaudhry et al. 2018, "Riemannian Walk for Incremental
  Learning", ECCV; forgetting of task j after the last step, averaged):
      f_j = max_{l in [j, T-2]} R[l, j] - R[T-1, j]
      F   = 1/(T-1) * sum_{j=0}^{T-2} f_j
* backward transfer (Lopez-Paz & Ranzato 2017, GEM, NeurIPS):
      BWT = 1/(T-1) * sum_{j=0}^{T-2} (R[T-1, j] - R[j, j])
  negative BWT is forgetting; positive BWT means later tasks helped old ones.
* plasticity (accuracy on a task right after learning it):
      P = 1/T * sum_{j=0}^{T-1} R[j, j]

Nothing here knows whether R is class-incremental or task-incremental; the
same functions are applied to both matrices of a result file.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = [
    "FORGETTING_CONVENTIONS",
    "SUMMARY_KEYS",
    "as_matrix",
    "final_accuracy",
    "pooled_accuracy",
    "average_incremental_accuracy",
    "average_forgetting",
    "backward_transfer",
    "plasticity",
    "summarize",
    "accuracy_curves",
    "WORST_VALUE",
]

FORGETTING_CONVENTIONS = ("chaudhry", "first_last", "pycil")

# The keys of ``summarize`` (and of ``metrics.class_il`` / ``metrics.task_il``
# in a result file), in that order, and their worst values: core.objectives.
from core.objectives import SUMMARY_KEYS, WORST_VALUE  # noqa: E402


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------

def as_matrix(R: Any) -> np.ndarray:
    """Return R as a float T x T numpy array with NaN above the diagonal.

    Accepts nested lists (``None`` for the unseen entries, as in result.json)
    or a numpy array (NaN above the diagonal). Whatever sits above the diagonal
    is ignored and replaced by NaN: no metric here reads it.

    Raises ValueError (one line) unless R is a non-empty square 2-D matrix whose
    lower triangle, diagonal included, is finite and within [0, 1].
    """
    if isinstance(R, np.ndarray):
        try:
            M = np.array(R, dtype=float)           # a copy; None in object arrays -> NaN
        except (TypeError, ValueError) as exc:
            raise ValueError(f"accuracy matrix has non-numeric entries ({_first_line(exc)})") from None
    else:
        # Nested lists: check the shape ourselves so ragged input gives our
        # message rather than numpy's "inhomogeneous shape" error.
        try:
            rows = list(R)
        except TypeError:
            raise ValueError(f"accuracy matrix must be a 2-D array-like, got {type(R).__name__}") from None
        if not rows:
            raise ValueError("accuracy matrix is empty (no task completed)")
        if not all(isinstance(r, (list, tuple, np.ndarray)) for r in rows):
            raise ValueError("accuracy matrix must be 2-D: a list of rows")
        lengths = sorted({len(r) for r in rows})
        if len(lengths) != 1:
            raise ValueError(f"accuracy matrix rows have different lengths {lengths}; "
                             "it must be square T x T with null above the diagonal")
        try:
            M = np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"accuracy matrix has non-numeric entries ({_first_line(exc)})") from None
    if M.ndim != 2:
        raise ValueError(f"accuracy matrix must be 2-D, got {M.ndim}-D with shape {M.shape}")
    T, C = M.shape
    if T != C:
        raise ValueError(f"accuracy matrix must be square T x T, got shape {T} x {C}")
    if T == 0:
        raise ValueError("accuracy matrix is empty (no task completed)")
    lower = np.tril(np.ones((T, T), dtype=bool))
    vals = M[lower]
    bad = ~np.isfinite(vals)
    if bad.any():
        i, j = np.argwhere(lower & ~np.isfinite(M))[0]
        raise ValueError(f"accuracy matrix entry R[{i}][{j}] (on or below the diagonal) is missing or "
                         f"not finite: {float(M[i, j])!r}")
    out_of_range = (vals < 0.0) | (vals > 1.0)
    if out_of_range.any():
        i, j = np.argwhere(lower & ((M < 0.0) | (M > 1.0)))[0]
        raise ValueError(f"accuracy matrix entry R[{i}][{j}] = {float(M[i, j])!r} is outside [0, 1] "
                         "(accuracies are fractions, not percentages)")
    M[~lower] = np.nan
    return M


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _sizes(eval_sizes: Sequence[float], T: int) -> np.ndarray:
    """Validate eval_sizes for a T x T matrix; return the first T as floats.

    A stream may list sizes for all its tasks while a truncated trial's matrix
    covers only the first T, so more than T sizes are accepted (the extra ones
    belong to tasks never trained on and are ignored); fewer are an error.
    """
    try:
        n = np.asarray(eval_sizes, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"eval_sizes must be a list of numbers, got {eval_sizes!r}") from None
    if n.ndim != 1:
        raise ValueError(f"eval_sizes must be 1-D, got shape {n.shape}")
    if n.shape[0] < T:
        raise ValueError(f"eval_sizes has {n.shape[0]} entries but the accuracy matrix has {T} tasks")
    n = n[:T]
    if not np.all(np.isfinite(n)) or np.any(n <= 0):
        raise ValueError(f"eval_sizes must be positive finite sample counts, got {n.tolist()}")
    return n


# --------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------

def final_accuracy(R: Any) -> float:
    """Macro final accuracy: mean_j R[T-1, j], each task weighted equally (GEM's ACC)."""
    M = as_matrix(R)
    return float(np.mean(M[-1, :]))


def pooled_accuracy(R: Any, eval_sizes: Sequence[float], step: int | None = None) -> float:
    """Micro accuracy at step t on all eval samples of tasks 0..t pooled.

    sum_{j<=t} R[t, j] * n_j / sum_{j<=t} n_j, with t = ``step`` (default the
    last row, T-1; negative steps count from the end as in Python indexing).
    This is what "accuracy on all classes seen so far" means when tasks have
    different eval sizes; the macro mean weights a small task as much as a big one.
    """
    M = as_matrix(R)
    T = M.shape[0]
    n = _sizes(eval_sizes, T)
    if step is None:
        t = T - 1
    else:
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            raise ValueError(f"step must be an int, got {step!r}")
        if not -T <= step < T:
            raise ValueError(f"step {step} out of range for {T} tasks")
        t = int(step) % T
    row, w = M[t, : t + 1], n[: t + 1]
    return float(np.dot(row, w) / np.sum(w))


def average_incremental_accuracy(R: Any, eval_sizes: Sequence[float]) -> float:
    """Average incremental accuracy (Rebuffi et al. 2017, iCaRL).

    Mean over steps t = 0..T-1 of ``pooled_accuracy(R, eval_sizes, t)``, the
    first step included (as iCaRL and PyCIL average their whole curve; some
    later papers, e.g. PODNet, leave the first step out — we do not).
    """
    M = as_matrix(R)
    T = M.shape[0]
    n = _sizes(eval_sizes, T)
    return float(np.mean([pooled_accuracy(M, n, t) for t in range(T)]))


def average_forgetting(R: Any, convention: str = "chaudhry") -> float:
    """Average forgetting over tasks 0..T-2 after the last step (the last task is excluded).

    Three conventions, differing only in the reference accuracy of task j that
    the final accuracy R[T-1, j] is subtracted from:

    * ``"chaudhry"`` (default; Chaudhry et al. 2018, RWalk):
      max_{l in [j, T-2]} R[l, j] — the best accuracy task j ever had at an
      EARLIER step, the last row excluded. Can be negative (a task that is
      better at the end than ever before has negative forgetting).
    * ``"first_last"`` — R[j, j], the accuracy right after learning task j
      (Avalanche's ``StreamForgetting``/``ExperienceForgetting``: the first value
      recorded for an experience minus the last one). Equals ``-backward_transfer``.
    * ``"pycil"`` — max_{l in [j, T-1]} R[l, j], the max INCLUDING the last row
      (PyCIL's ``trainer.py``: ``np.max(acctable, axis=1) - acctable[:, task]``
      over the old tasks). Never negative.

    For T == 1 there is no earlier task, nothing can have been forgotten yet,
    and 0.0 is returned (rather than NaN) under every convention.
    """
    if convention not in FORGETTING_CONVENTIONS:
        raise ValueError(f"unknown forgetting convention {convention!r}; "
                         f"expected one of {', '.join(FORGETTING_CONVENTIONS)}")
    M = as_matrix(R)
    T = M.shape[0]
    if T == 1:
        return 0.0
    final = M[T - 1, : T - 1]                      # R[T-1, j] for j < T-1
    if convention == "first_last":
        ref = np.diag(M)[: T - 1]                  # R[j, j]
    else:
        # Rows l in [j, last] of column j; NaN above the diagonal (l < j)
        # drops out of nanmax, so the range starts at l = j by construction.
        last = T - 1 if convention == "chaudhry" else T   # exclusive upper row
        ref = np.nanmax(M[:last, : T - 1], axis=0)
    return float(np.mean(ref - final))


def backward_transfer(R: Any) -> float:
    """Backward transfer (Lopez-Paz & Ranzato 2017, GEM): mean_{j<T-1} R[T-1, j] - R[j, j].

    Negative when learning later tasks hurt earlier ones. 0.0 for T == 1 (no
    earlier task to transfer to).
    """
    M = as_matrix(R)
    T = M.shape[0]
    if T == 1:
        return 0.0
    return float(np.mean(M[T - 1, : T - 1] - np.diag(M)[: T - 1]))


def plasticity(R: Any) -> float:
    """Plasticity: mean_j R[j, j], the accuracy on each task right after learning it."""
    M = as_matrix(R)
    return float(np.mean(np.diag(M)))


def summarize(R: Any, eval_sizes: Sequence[float]) -> dict[str, float]:
    """All headline metrics of one accuracy matrix, as python floats.

    Keys (``SUMMARY_KEYS``): final_acc (macro), final_acc_pooled (micro),
    avg_inc_acc, forgetting (Chaudhry convention), bwt, plasticity. Used for
    both the class-IL and the task-IL matrix of a result.
    """
    M = as_matrix(R)
    n = _sizes(eval_sizes, M.shape[0])
    out = {
        "final_acc": final_accuracy(M),
        "final_acc_pooled": pooled_accuracy(M, n),
        "avg_inc_acc": average_incremental_accuracy(M, n),
        "forgetting": average_forgetting(M, "chaudhry"),
        "bwt": backward_transfer(M),
        "plasticity": plasticity(M),
    }
    assert tuple(out) == SUMMARY_KEYS
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())
    return out


def accuracy_curves(R: Any, eval_sizes: Sequence[float]) -> dict[str, list[float]]:
    """Per-step curves for plots, one value per completed task t = 0..T-1.

    ``"current_task"``: R[t, t], accuracy on the task just learned.
    ``"all_seen"``: pooled accuracy at step t on all tasks seen so far (the
    curve the iCaRL paper plots; its mean is the average incremental accuracy).
    """
    M = as_matrix(R)
    T = M.shape[0]
    n = _sizes(eval_sizes, T)
    return {
        "current_task": [float(M[t, t]) for t in range(T)],
        "all_seen": [pooled_accuracy(M, n, t) for t in range(T)],
    }

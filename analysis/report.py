"""The Pareto report of one search, or a comparison of several.

    python analysis/report.py RESULTS_DIR [RESULTS_DIR ...] [--out DIR] [--color PARAM]

Reads result FILES only (search.json, trials.csv, trials/<id>/result.json) and
writes into ``--out`` (default: the results folder itself; for several, a new
folder ``compare-<methods>-<time>/`` beside the first, ``-2``, ``-3``, ... added
when taken: a comparison never writes into a search's folder, and a second one
never overwrites the first):

- ``pareto.png``: final accuracy against average forgetting (both in %) for every
  trial; the non-dominated front on the search's own objectives (completed
  trials only) as a step line with its trial numbers; colour = memory budget
  when memory is searched (or ``--color PARAM``); trials that completed but did
  not learn (status ``infeasible``, ``core/feasibility.py``) as grey open
  triangles, never on the front. Trials that did not complete (diverged, error,
  stopped early, running) are grey crosses in a panel of their own at the
  metrics of the tasks they finished: partial metrics (forgetting 0 after one
  task) sit in the best corner and must not be read as trade-offs. Labels are
  placed so that none overlaps another (``analysis/figlabels.py``); trials at
  one point share one label ("#3, #7"). With several
  folders, one colour/marker per method, each method with its own front, the
  combined front of all of them (black, dashed), and trials named across
  searches ("icarl#3", "der#1").
  Task-incremental-only methods (PackNet) are measured on the task-IL metrics
  and go on ``pareto_task_il.png``, never on a front with class-IL methods.
- ``front_curves.png``: accuracy on the task just learned and on all classes
  seen so far after each task, for the front configs (at most 8);
  ``front_matrices.png``: their accuracy matrices (%).
- ``importance.png``: fANOVA parameter importance per objective (Optuna), from an
  in-memory study rebuilt from the completed trials.
- the rerun's final table, when ``search/rerun.py RESULTS_DIR`` has written
  ``final_table.md/.csv`` into the folder: shown with its notes and a link, and
  its finetune and joint rows drawn on the class-IL Pareto plot as reference
  points (white diamond, black star), labelled with their split. They are
  test-split means after training on train + validation, the trials validation
  numbers after training on train: the legend and caption say so, and they are
  never on a front. They are drawn anyway because no validation run of the two
  bounds exists (the rerun measures on test) and they give the plot its scale.
- a comparison's combined front over all class-IL methods (and over all task-IL
  ones), on the objectives they share, and each method's hypervolume next to the
  combined one, against one reference point: each objective's worst value
  (``core.objectives.WORST_VALUE``: accuracy 0, forgetting 100 %), memory at
  1.1 x the largest memory of a compared trial. A single search's front has its
  hypervolume too.
- ``report.md`` and ``report.html`` (self-contained: images embedded). The
  search's summary counts the trials by status and states the did-not-learn
  rule with its margin (search.json's ``min_plasticity_margin``; the default
  for a folder written before the rule); the trials that did not learn are
  listed with the reason, apart from the failed and stopped ones.

Recorded numbers are not trusted as they stand: ``analysis/results.py`` checks
every record, and a trial whose record fails (or whose folder is gone) is
excluded -- never on a front, never counted as completed, named with its file
and the reason in the report's "Records not trusted" section and in one
``warning:`` line on stderr each; the report is still built (exit 0).

A failed build never damages the previous report. Everything that can be
refused (unreadable folders, an unknown ``--color``, a search space Optuna
cannot rebuild) is refused before a file is written; the report is then
built in a hidden temporary folder inside the output folder (same
filesystem) and each finished file is moved into place with ``os.replace``
only once all of them are written; figures of the previous report that this
one does not redraw are removed last. A failure on the way (a full disk, any
exception) leaves the previous files byte-identical and no temporary folder.

The command prints the path of report.html; an expected failure (missing
folder, no search.json, other format version, no trials, unknown --color,
a full disk) is one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import math
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.metrics import accuracy_curves  # noqa: E402
from analysis.figlabels import Label, merge_coincident, place_labels  # noqa: E402
from analysis.final_table import FinalTable, read_final_table, table_rows  # noqa: E402
from analysis.pareto import hypervolume, non_dominated, pareto_table  # noqa: E402
from core.cli import ArgumentParser, cli_main  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.feasibility import SPEC_KEY  # noqa: E402
from core.files import write_bytes_atomic  # noqa: E402
from core.rungs import rung_tasks  # noqa: E402
from core.objectives import LABELS, WORST_VALUE  # noqa: E402
from analysis.results import (PARAM_PREFIX, TASK_IL_PREFIX, ResultsError, SearchResults,  # noqa: E402
                              fidelity_ladder, load_search, result_matrix)
from core.result import TRIAL_NUMBER_KEY  # noqa: E402

__all__ = ["build_report", "main", "ReportWriteError", "MAX_FRONT_CONFIGS", "MIN_TRIALS_FOR_IMPORTANCE"]

MAX_FRONT_CONFIGS = 8
MIN_TRIALS_FOR_IMPORTANCE = 4
FIGURES = ("pareto.png", "pareto_task_il.png", "front_curves.png", "front_matrices.png", "importance.png")
DOCUMENTS = ("report.md", "report.html")
# The build folder's name: hidden, and recognisable as ours in a listing.
BUILD_PREFIX = ".report-build-"

# Above this many not-completed trials the Pareto plot leaves their crosses unlabelled.
MAX_GREY_LABELS = 12

METRIC_LABELS = LABELS
MARKERS = ("o", "s", "^", "D", "v", "P", "*", "h", "<", ">")
# A trial that completed but did not learn (trials.csv status "infeasible",
# core/feasibility.py) is neither a trade-off point nor a failure: it has its own
# name in the report and its own marker in the Pareto plot (open, grey: off the front).
INFEASIBLE = "infeasible"
STATUS_LABELS = {INFEASIBLE: "did not learn"}
INFEASIBLE_MARKER = "^"
# The rerun's baselines (search/rerun.py runs finetune and joint next to the picked
# configs), drawn as reference points on the class-IL Pareto plot: marker, face colour.
REFERENCE_MARKERS = {"finetune": ("D", "white", "white diamond"), "joint": ("*", "black", "black star")}


class ReportWriteError(UserError):
    """The report could not be written (a full disk, no permission); the previous one is untouched."""


# --------------------------------------------------------------------------
# one search as the report sees it
# --------------------------------------------------------------------------

@dataclass
class _Search:
    res: SearchResults
    label: str                 # method name, made unique across the folders compared
    table: pd.DataFrame        # pareto_table output (index = trials row index)
    numbers: pd.Series         # trial number per row (for labels)
    final: FinalTable | None = None   # the rerun's final table in the folder (search/rerun.py), if any
    final_error: str | None = None    # why a final table that is there could not be read

    @property
    def task_il(self) -> bool:
        return self.res.task_incremental_only

    def col(self, metric: str) -> str:
        """Column of a summary metric for this search (task_il.* for task-IL-only methods)."""
        return TASK_IL_PREFIX + metric if self.task_il else metric

    @property
    def front(self) -> pd.DataFrame:
        return self.table[self.table["on_front"]]


def _prepare(res: SearchResults, label: str) -> _Search:
    df = res.trials
    objectives = res.objective_columns
    missing = [c for c in objectives if c not in df.columns]
    if missing:
        raise ResultsError(f"{res.path / 'trials.csv'} lacks the objective column(s) {missing}")
    table = pareto_table(df, objectives, eligible=res.eligible)
    try:
        final, final_error = read_final_table(res.path), None
    except ResultsError as exc:  # a broken final table must not sink the report of the search
        final, final_error = None, str(exc)
    return _Search(res=res, label=label, table=table, numbers=_trial_numbers(df), final=final,
                   final_error=final_error)


def _trial_numbers(df: pd.DataFrame) -> pd.Series:
    """Each row's trial number (``trial_number``: start order, as the live log,
    trials.csv, Optuna and ``rerun.py --pick`` give it). A folder from before
    trial numbers has none: its rows are numbered 1, 2, ... in table order,
    and a row without one in a numbered folder gets a number after the rest."""
    given = df[TRIAL_NUMBER_KEY] if TRIAL_NUMBER_KEY in df.columns else pd.Series(pd.NA, index=df.index)
    if given.isna().all():
        return pd.Series(range(1, len(df) + 1), index=df.index, dtype=int)
    after = int(given.max()) + 1
    return pd.Series([int(n) if pd.notna(n) else after + i for i, n in enumerate(given)], index=df.index, dtype=int)


# --------------------------------------------------------------------------
# one front over several searches, and hypervolumes
# --------------------------------------------------------------------------

@dataclass
class _Group:
    """Searches measured alike (all class-IL, or all task-IL) and their combined front."""
    searches: list[_Search]
    objectives: list[tuple[str, str]]  # metric name, sense: the objectives every search of the group has
    reference: list[float]             # hypervolume reference point, one value per objective
    table: pd.DataFrame                # every trial: "_k" (search index), "_number", objectives, "on_front"
    note: str                          # how the objectives and the reference were chosen

    @property
    def senses(self) -> list[str]:
        return [sense for _, sense in self.objectives]

    def points(self, k: int | None = None) -> np.ndarray:
        """Objective values of the eligible trials (of search ``k``, or of all)."""
        t = self.table[self.table["_eligible"]]
        if k is not None:
            t = t[t["_k"] == k]
        return t[[n for n, _ in self.objectives]].to_numpy(dtype=float, na_value=np.nan)

    def hypervolume(self, k: int | None = None) -> float:
        return hypervolume(self.points(k), self.senses, self.reference)

    @property
    def front(self) -> pd.DataFrame:
        return self.table[self.table["on_front"]]


def _group(searches: list[_Search]) -> _Group:
    """One front over ``searches`` (all class-IL or all task-IL), on the objectives
    they share (the plot's two when they share none), and the hypervolume reference:
    each objective's worst value (core/objectives.py: accuracy 0, forgetting 100 %),
    and for memory, unbounded, 1.1 x the largest memory of an eligible trial of the
    group -- one reference for every search, so their hypervolumes compare."""
    first = searches[0].res.objectives
    common = [o for o in first if all(o in s.res.objectives for s in searches)]
    note = ""
    if len(searches) > 1 and any(s.res.objectives != first for s in searches):
        note = "the searches have different objectives: this front uses those they share. "
    if not common:
        common = [("final_acc", "max"), ("forgetting", "min")]
        note = "the searches share no objective: this front uses final accuracy and forgetting. "
    frames = []
    for k, s in enumerate(searches):
        t = s.res.trials
        f = pd.DataFrame({"_k": k, "_row": range(len(t)), "_number": s.numbers.to_numpy(),
                          "trial_id": t["trial_id"].to_numpy(),
                          "_eligible": s.res.eligible.to_numpy()}, index=range(len(t)))
        # Exemplar images stored at the end (the front per memory budget reads it).
        f["_memory"] = (pd.to_numeric(t["memory"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                        if "memory" in t.columns else np.nan)
        for name, _ in common:
            col = "memory" if name == "memory" else s.col(name)
            f[name] = pd.to_numeric(t[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        frames.append(f)
    df = pd.concat(frames, ignore_index=True)
    table = pareto_table(df, dict(common), eligible=df["_eligible"])
    reference = []
    for name, _ in common:
        worst = WORST_VALUE.get(name)
        if worst is None:
            values = table.loc[table["_eligible"], name].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            biggest = float(values.max()) if len(values) else 0.0
            worst = max(1.1 * biggest, biggest + 1.0)
        reference.append(float(worst))
    ref_text = ", ".join(f"{METRIC_LABELS.get(n, n)} {_objective_value(n, v)}" for (n, _), v in zip(common, reference))
    return _Group(searches, common, reference, table, note + f"hypervolume reference: {ref_text}")


def _objective_value(name: str, v: Any) -> str:
    return _fmt_value(v) if name == "memory" else f"{_pct(v)} %"


def _trial_name(s: _Search, number: int) -> str:
    """A trial's name across searches: "icarl#3" (the plot of a single search says "#3")."""
    return f"{s.label}#{number}"


def _labels(results: list[SearchResults]) -> list[str]:
    methods = [r.method for r in results]
    out = []
    for r in results:
        out.append(r.method if methods.count(r.method) == 1 else f"{r.method} ({r.path.name})")
    if len(set(out)) < len(out):  # same method and same folder name: number them
        out = [f"{x} [{i + 1}]" for i, x in enumerate(out)]
    return out


# --------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------

def _is_missing(v: Any) -> bool:
    try:
        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _fmt_value(v: Any) -> str:
    if _is_missing(v):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return str(int(f)) if f.is_integer() and abs(f) < 1e15 else f"{f:.4g}"
    return str(v)


def _pct(v: Any) -> str:
    return "–" if _is_missing(v) or not math.isfinite(float(v)) else f"{100 * float(v):.1f}"


def _params_text(s: _Search, row: pd.Series, sep: str = ", ") -> str:
    return sep.join(f"{p}={_fmt_value(row.get(PARAM_PREFIX + p))}" for p in s.res.spec["space"])


def _objectives_text(res: SearchResults) -> str:
    parts = []
    for name, sense in res.objectives:
        parts.append(f"{'maximise' if sense == 'max' else 'minimise'} {METRIC_LABELS.get(name, name)}")
    text = ", ".join(parts)
    if res.spec.get("asha"):
        text += " (single objective, ASHA early stopping)"
    elif res.spec.get("fidelity_rungs"):
        from core.fidelity import describe
        rungs = "; ".join(describe(r) for r in res.spec["fidelity_rungs"])
        text += (f" (successive halving over fidelities: rungs {rungs}; then the protocol itself; 1 in "
                 f"{res.spec.get('reduction_factor')} goes on at each rung)")
    elif res.spec.get("mo_asha"):
        rf, grace = res.spec.get("reduction_factor", 2), res.spec.get("grace_tasks", 1)
        try:
            rungs = rung_tasks(res.num_tasks, grace, rf) if res.num_tasks is not None else []
        except (TypeError, ValueError):  # a hand-edited search.json: say the settings, not the rungs
            rungs = []
        where = (f"after {', '.join(map(str, rungs))} of {res.num_tasks} tasks" if rungs
                 else f"every {grace} x {rf}^i tasks")
        text += (f" (multi-objective ASHA early stopping: 1 in {rf} trials goes on {where}"
                 + ("; the 1-task comparison ranks by accuracy alone" if grace == 1 else "") + ")")
    if res.task_incremental_only:
        text += " — task-incremental metrics (task identity given at test time)"
    return text


def _status_counts(res: SearchResults) -> str:
    """"completed 7, did not learn 1, truncated 1, excluded 1 (bad record)": every status, and why trials were excluded."""
    counts = res.trials["status"].value_counts()
    order = ["completed", INFEASIBLE, "truncated", "diverged", "error", "running"]
    parts = [f"{STATUS_LABELS.get(k, k)} {int(counts[k])}" for k in order if k in counts]
    kinds = res.exclusion_counts()
    if kinds:
        why = (next(iter(kinds)) if len(kinds) == 1
               else ", ".join(f"{n} {kind}" for kind, n in kinds.items()))
        parts.append(f"excluded {sum(kinds.values())} ({why})")
    return ", ".join(parts) or "none"


def _feasibility_text(res: SearchResults) -> str:
    """The did-not-learn rule the trials were judged with (core/feasibility.py): its margin and where it came from."""
    margin = res.min_plasticity_margin
    where = (f"{SPEC_KEY} {margin:g} in search.json" if res.spec.get(SPEC_KEY) is not None
             else f"{SPEC_KEY} {margin:g}, the default: search.json predates the rule")
    if margin == 0:
        return f"did-not-learn rule: off ({where}); every completed trial competes for the front"
    return (f"did-not-learn rule: a completed trial whose task-incremental plasticity (accuracy on each task "
            f"right after learning it, argmax within the task's classes) is less than {100 * margin:g} points above "
            f"chance (1 / classes of the task) did not learn: status infeasible, never on a front ({where})")


# --------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------

def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path, **savefig_kw: Any) -> None:
    """Render ``fig`` in memory, then write it in one atomic step: a full disk
    fails the write and leaves no half-written (or empty) PNG behind."""
    plt = _pyplot()
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, **savefig_kw)
    finally:
        plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())


def _color_column(s: _Search, color: str | None) -> str | None:
    df = s.res.trials
    if color is None:
        return PARAM_PREFIX + "memory" if "memory" in s.res.spec["space"] and PARAM_PREFIX + "memory" in df else None
    for cand in (PARAM_PREFIX + color, color):
        if cand in df.columns:
            return cand
    options = [c[len(PARAM_PREFIX):] for c in df.columns if c.startswith(PARAM_PREFIX)] + ["memory", "wall_time_s"]
    raise ResultsError(f"--color {color!r}: no such parameter in {s.res.path / 'trials.csv'} (choose from {', '.join(options)})")


def _step_front(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The staircase (x min, y max) through the points non-dominated in the plane, sorted by x."""
    pts = np.column_stack([x, y])
    keep = non_dominated(pts, ["min", "max"])
    order = np.argsort(pts[keep, 0], kind="stable")
    return pts[keep][order, 0], pts[keep][order, 1]


def _pareto_figure(searches: list[_Search], color: str | None, path: Path, task_il: bool) -> list[str]:
    """Accuracy vs forgetting for the given searches (all class-IL or all task-IL), saved to ``path``. Returns notes."""
    fig, notes = _draw_pareto(searches, color, task_il)
    _save(fig, path)
    return notes


def _draw_pareto(searches: list[_Search], color: str | None, task_il: bool) -> tuple[Any, list[str]]:
    """The Pareto figure (not saved: the caller saves or inspects it) and its notes.

    Panel ``trials``: the completed trials (colour = memory, ``--color`` or the
    method), each search's front, and the trials that completed but did not learn.
    Panel ``not completed`` (only when there are any with metrics): diverged,
    failed, stopped-early and running trials at the metrics of the tasks they
    finished. Those are not comparable: after one task forgetting is 0 and the
    accuracy is that of one task, the best corner of the plot, so drawn among the
    completed trials they looked like the best trade-offs.
    """
    plt = _pyplot()
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.ticker import NullFormatter

    notes: list[str] = []
    single = len(searches) == 1
    partial = [_partial(s) for s in searches]
    if any(p.any() for p in partial):
        fig, (ax, side) = plt.subplots(1, 2, figsize=(12.5, 6.4), gridspec_kw={"width_ratios": [3, 1.3]})
        side.set_label("not completed")
    else:
        fig, ax = plt.subplots(figsize=(9, 6.4))
        side = None
    ax.set_label("trials")  # the panels are found by name (tests, and whoever inspects the figure)
    grey_x, grey_y, grey_txt, no_metrics, excluded = [], [], [], 0, 0
    # Completed but did not learn: full metrics, so drawn with the completed trials, with a marker of their own.
    nl_x, nl_y, nl_txt, n_no_learn = [], [], [], 0
    front_labels: list[Label] = []
    all_points: list[tuple[float, float]] = []
    colours = plt.get_cmap("tab10").colors
    for k, s in enumerate(searches):
        # Confirmation trials (other seeds of front candidates, --confirm-seeds) are
        # not points of their own: the "Front under seed noise" section shows them.
        confirmation = s.res.is_confirmation.reindex(s.table.index, fill_value=False)
        if confirmation.any():
            notes.append(f"{int(confirmation.sum())} confirmation trial(s) of {s.label} (other seeds of front "
                         f"candidates) are not drawn: see Front under seed noise")
        t = s.table[~confirmation]
        x = 100 * t[s.col("forgetting")].to_numpy(dtype=float, na_value=np.nan)
        y = 100 * t[s.col("final_acc")].to_numpy(dtype=float, na_value=np.nan)
        finite = np.isfinite(x) & np.isfinite(y)
        elig = (t["status"] == "completed").to_numpy()
        no_learn = (t["status"] == INFEASIBLE).to_numpy()
        # An excluded trial's numbers were never read (NaN): counted apart, not as "failed".
        trusted = (t["status"] != "excluded").to_numpy()
        excluded += int((~trusted).sum())
        on = t["on_front"].to_numpy()
        failed = ~elig & ~no_learn & trusted
        grey_x += list(x[failed & finite])
        grey_y += list(y[failed & finite])
        nl_x += list(x[no_learn & finite])
        nl_y += list(y[no_learn & finite])
        n_no_learn += int(no_learn.sum())
        prefix = "" if single else s.label  # "icarl#3": unique across the searches compared
        all_points += list(zip(x[finite & ~failed], y[finite & ~failed]))
        numbers = s.numbers.loc[t.index].to_numpy()
        total = s.res.num_tasks
        done = pd.to_numeric(t["tasks_done"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        grey_txt += [(xi, yi, f"{prefix}#{n} {st}" + (f" {int(d)}/{total}" if total and np.isfinite(d) else ""))
                     for xi, yi, n, st, d in zip(x[failed & finite], y[failed & finite], numbers[failed & finite],
                                                 t["status"].to_numpy()[failed & finite], done[failed & finite])]
        nl_txt += [(xi, yi, f"{prefix}#{n} {STATUS_LABELS[INFEASIBLE]}")
                   for xi, yi, n in zip(x[no_learn & finite], y[no_learn & finite], numbers[no_learn & finite])]
        no_metrics += int((failed & ~finite).sum())
        m = elig & finite
        n_done = int(elig.sum())
        if single:
            ccol = _color_column(s, color)
            front_colour = "crimson"
            if ccol is None:
                ax.scatter(x[m], y[m], s=42, c="tab:blue", edgecolors="k", linewidths=0.4, zorder=3,
                           label=f"completed trials ({n_done})")
            else:
                cvals = t[ccol]
                name = ccol[len(PARAM_PREFIX):] if ccol.startswith(PARAM_PREFIX) else ccol
                num = pd.to_numeric(cvals, errors="coerce")
                if num[m].notna().all() and not pd.api.types.is_bool_dtype(cvals):
                    v = num.to_numpy(dtype=float, na_value=np.nan)
                    dist = s.res.spec["space"].get(name, {})
                    lo, hi = np.nanmin(v[m]) if m.any() else 0.0, np.nanmax(v[m]) if m.any() else 1.0
                    if dist.get("log") and lo > 0:
                        norm = LogNorm(vmin=lo, vmax=hi if hi > lo else lo * 1.001)
                    else:
                        norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1)
                    sc = ax.scatter(x[m], y[m], s=42, c=v[m], cmap="viridis", norm=norm, edgecolors="k",
                                    linewidths=0.4, zorder=3, label=f"completed trials ({n_done})")
                    cb = fig.colorbar(sc, ax=ax, pad=0.02)
                    if isinstance(norm, LogNorm):
                        # Matplotlib labels only the powers of ten: 10^2 and 10^3 over memory's [40, 2000].
                        ticks = _log_ticks(norm.vmin, norm.vmax)
                        cb.set_ticks(ticks, labels=[_fmt_value(v) for v in ticks])
                        cb.ax.yaxis.set_minor_formatter(NullFormatter())
                    unit = " budget (exemplars)" if name == "memory" else ""
                    cb.set_label(f"{name}{unit}" + (", log scale" if isinstance(norm, LogNorm) else ""))
                else:  # categorical: one colour per value
                    cats = [c for c in pd.unique(cvals[m].astype(str))]
                    for i, cat in enumerate(cats):
                        sel = m & (cvals.astype(str).to_numpy() == cat)
                        ax.scatter(x[sel], y[sel], s=42, color=colours[i % 10], edgecolors="k", linewidths=0.4,
                                   zorder=3, label=f"{name}={cat}")
        else:
            front_colour = colours[k % 10]
            ax.scatter(x[m], y[m], s=36, color=front_colour, marker=MARKERS[k % len(MARKERS)], edgecolors="k",
                       linewidths=0.3, alpha=0.75, zorder=3, label=f"{s.label}: {n_done} completed")
        # The front: ring + number on every front point; staircase through them.
        fm = on & finite
        if fm.any():
            lbl = "Pareto front" if single else f"{s.label} front"
            ring_lbl = None
            if len(s.res.objectives) != 2 or {n for n, _ in s.res.objectives} != {"final_acc", "forgetting"}:
                # The front lives in more (or other) dimensions than the plot: circle it, and draw
                # the staircase of its members that are also non-dominated in this plane.
                ring_lbl = f"{lbl} on {', '.join(n for n, _ in s.res.objectives)} (circled)"
                lbl = f"{lbl}: its accuracy–forgetting staircase"
            sx, sy = _step_front(x[fm], y[fm])
            if len(sx) > 1:
                ax.plot(sx, sy, drawstyle="steps-post", color=front_colour, lw=1.6, zorder=2, label=lbl)
            else:  # one point: no line is drawn, so none in the legend; its ring stands for the front
                ring_lbl = ring_lbl or f"{lbl} (circled; one trial)"
            ax.scatter(x[fm], y[fm], s=150, facecolors="none", edgecolors=front_colour, linewidths=1.6, zorder=4,
                       label=ring_lbl)
            front_labels += [Label(xi, yi, f"{prefix}#{n}", front_colour if not single else "black")
                             for xi, yi, n in zip(x[fm], y[fm], s.numbers.loc[t.index[fm]])]
        if color is not None and not single and k == 0:
            notes.append(f"--color {color} is ignored when several searches are compared (colour = method).")
    if not single:
        _draw_combined(ax, _group(searches), task_il)
    # Labels only while they stay readable: an early-stopped search has dozens of grey
    # points, and the report's tables of failed, stopped and not-learned trials name them all.
    grey_unlabelled = ", listed in the report" if len(grey_txt) > MAX_GREY_LABELS else ""
    nl_unlabelled = ", listed in the report" if len(nl_txt) > MAX_GREY_LABELS else ""
    if n_no_learn:
        # A collapsed model's ~0 forgetting puts it where a front point would be: an
        # open marker of its own says it is no trade-off point and not a failed run.
        ax.scatter(nl_x, nl_y, marker=INFEASIBLE_MARKER, s=46, facecolors="none", edgecolors="0.35",
                   linewidths=1.2, zorder=2, label=f"did not learn ({n_no_learn}){nl_unlabelled}")
        notes.append(f"{n_no_learn} trial(s) completed but did not learn (grey open triangles): never on a "
                     "front; listed under 'Trials that did not learn'.")
    if side is not None:
        side.scatter(grey_x, grey_y, marker="x", s=40, color="0.45", linewidths=1.2, zorder=2,
                     label=f"diverged / error / stopped early / running ({len(grey_x)}){grey_unlabelled}")
        side.set_title("not completed: metrics of the tasks done\n(partial, not comparable, never on a front)",
                       fontsize=10)
        side.set_xlabel("forgetting so far (%)")
        side.set_ylabel("accuracy so far (%)")
        side.grid(True, alpha=0.3)
        side.margins(0.15)
        notes.append(f"{len(grey_x)} trial(s) that did not complete (diverged, failed, stopped early or still "
                     "running) are drawn in the right-hand panel at the metrics of the tasks they finished: "
                     "after one task forgetting is 0, which would put them in the best corner of the main plot.")
    refs = [] if task_il else _references(searches)
    ref_labels = []
    for method, (marker, face, _) in REFERENCE_MARKERS.items():
        mine = [r for r in refs if r.method == method]
        if not mine:
            continue
        splits = sorted({r.eval_split for r in mine})
        seeds = sorted({r.seeds for r in mine})
        ax.scatter([100 * r.forgetting for r in mine], [100 * r.final_acc for r in mine], marker=marker,
                   s=150 if marker == "*" else 60, facecolors=face, edgecolors="black", linewidths=1.1, zorder=5,
                   label=f"{method}: rerun, {'/'.join(splits)} split, mean of {'/'.join(map(str, seeds))} "
                         "seed(s) (a reference, not a trial)")
        ref_labels += [Label(100 * r.forgetting, 100 * r.final_acc, r.label, "black") for r in mine]
        all_points += [(100 * r.forgetting, 100 * r.final_acc) for r in mine]
    if refs:
        splits = sorted({r.eval_split for r in refs})
        shown = [f"{m} ({REFERENCE_MARKERS[m][2]})" for m in REFERENCE_MARKERS if any(r.method == m for r in refs)]
        notes.append(f"{' and '.join(shown)} {'are' if len(shown) > 1 else 'is'} the "
                     f"rerun's means on the {'/'.join(splits)} split after training on train + validation "
                     "(search/rerun.py, 'Final table' below), while the trials are validation numbers after "
                     "training on train alone: a reference for the scale of the trade-off, not points of a front.")
    if no_metrics:
        ax.plot([], [], ls="none", label=f"{no_metrics} failed trial(s) without metrics (not shown)")
    if excluded:
        ax.plot([], [], ls="none", label=f"{excluded} trial(s) excluded: record not trusted (not shown, see report)")
    kind = "task-incremental (task identity given at test time)\n" if task_il else "class-incremental, "
    split = searches[0].res.spec.get("stream_protocol", {}).get("dataset")
    what = searches[0].label if single else ", ".join(s.label for s in searches)
    ax.set_title(f"{what}{' on ' + str(split) if split else ''}: final accuracy vs forgetting\n"
                 f"{kind}validation split; circled = Pareto front (completed trials only)", fontsize=11)
    ax.set_xlabel("average forgetting (%)  ← lower is better")
    ax.set_ylabel("final accuracy (%)  ↑ higher is better")
    ax.grid(True, alpha=0.3)
    ax.margins(0.08)  # room for the labels of the points on the edges
    # Below the plots, where they cover neither a point nor a label.
    for a in (ax, side):
        if a is not None:
            a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2 if a is ax else 1, fontsize=8.5,
                     frameon=False)
    fig.tight_layout()
    _label_points(ax, [(front_labels, 8.5, True), (ref_labels, 8.5, True),
                       ([] if nl_unlabelled else [Label(*g, color="0.35") for g in nl_txt], 7.5, False)],
                  obstacles=all_points, notes=notes)
    if side is not None and not grey_unlabelled:
        _label_points(side, [([Label(*g, color="0.3") for g in grey_txt], 7.5, False)],
                      obstacles=list(zip(grey_x, grey_y)), notes=notes)
    return fig, notes


def _draw_combined(ax, g: _Group, task_il: bool) -> None:
    """The front over all the searches of the plot (black, dashed): its staircase in
    the accuracy-forgetting plane, or a ring when that is a single point."""
    x, y = [], []
    for _, r in g.front.iterrows():
        s = g.searches[int(r["_k"])]
        row = s.res.trials.iloc[int(r["_row"])]
        x.append(100 * float(row[s.col("forgetting")]))
        y.append(100 * float(row[s.col("final_acc")]))
    x, y = np.array(x, dtype=float), np.array(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return
    label = f"combined front of the {'task-IL' if task_il else 'class-IL'} methods ({int(ok.sum())} trials)"
    if [n for n, _ in g.objectives] != ["final_acc", "forgetting"]:
        label += f", on {', '.join(n for n, _ in g.objectives)}"
    sx, sy = _step_front(x[ok], y[ok])
    if len(sx) > 1:
        ax.plot(sx, sy, drawstyle="steps-post", color="black", ls="--", lw=1.2, zorder=2.5, label=label)
    else:
        ax.scatter(sx, sy, s=320, facecolors="none", edgecolors="black", linestyles="--", linewidths=1.2,
                   zorder=4, label=label)


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Readable ticks for a log colour scale over [lo, hi]: 1-2-5 per decade (1-3, or
    powers of ten alone, over a wide range: at most 9), and each end of the range
    that is not next to one of them, e.g. 50, 100, 200, 500, 1000, 2000 over [40, 2000]."""
    lo, hi = float(lo), float(hi)
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    for mantissas in ((1, 2, 5), (1, 3), (1,)):
        ticks = [float(f"{m}e{e}") for e in decades for m in mantissas if lo <= m * 10.0 ** e <= hi]
        if len(ticks) <= 9:
            break
    span = math.log10(hi / lo) if hi > lo else 1.0
    for end in (lo, hi):
        if all(abs(math.log10(end / t)) > 0.07 * span for t in ticks):
            ticks.append(float(f"{end:.3g}"))
    return sorted(ticks)


@dataclass
class _Reference:
    """finetune or joint as a search folder's rerun measured them (final_table.csv)."""
    method: str
    label: str
    final_acc: float     # fractions, mean over seeds
    forgetting: float
    eval_split: str
    seeds: int


def _references(searches: list[_Search]) -> list[_Reference]:
    """finetune and joint from each search's final table, class-incremental rows only.

    These are TEST-split numbers after training on train + validation (rerun.py),
    while the trials are validation numbers after training on train: close, not
    the same measurement. They are drawn because they are the only numbers of the
    two bounds under the same protocol, marked as such in the label, the legend
    and the caption, never on a front. (A rerun never measures them on
    validation, so waiting for such a run would mean never drawing them.)
    """
    out = []
    sources = [s for s in searches if s.final is not None]
    for s in sources:
        df = s.final.table
        for _, r in df[df["method"].isin(list(REFERENCE_MARKERS)) & (df["protocol"] == "CLASS-IL")].iterrows():
            if r["method"] == s.res.method:
                continue
            final, forgetting = float(r["final_acc_mean"]), float(r["forgetting_mean"])
            if not (math.isfinite(final) and math.isfinite(forgetting)):
                continue
            split = str(r["eval_split"])
            where = f", {s.label}'s rerun" if len(sources) > 1 else ""
            out.append(_Reference(str(r["method"]), f"{r['method']} ({split}{where})", final, forgetting, split,
                                  int(r["seeds"])))
    return out


def _partial(s: _Search) -> np.ndarray:
    """Rows of trials that did not complete but have metrics (of the tasks they finished)."""
    t = s.table
    x = t[s.col("forgetting")].to_numpy(dtype=float, na_value=np.nan)
    y = t[s.col("final_acc")].to_numpy(dtype=float, na_value=np.nan)
    status = t["status"].to_numpy()
    return (np.isfinite(x) & np.isfinite(y) & ~np.isin(status, ["completed", INFEASIBLE, "excluded"]))


def _label_points(ax, groups: list[tuple[list[Label], float, bool]], obstacles: list[tuple[float, float]],
                  notes: list[str]) -> None:
    """Place the labels without collisions (analysis/figlabels.py), group by group in
    the order given (the front's numbers first): each group is (labels, font size,
    on a white box); trials at one point share one label. A label that fits
    nowhere is said in ``notes``."""
    fig = ax.figure
    fig.canvas.draw()  # final layout and limits: positions are measured on screen
    renderer = fig.canvas.get_renderer()
    placed: list = []
    left_out: list[Label] = []
    for labels, size, boxed in groups:
        _, out = place_labels(ax, merge_coincident(ax, labels), renderer, fontsize=size, obstacles=obstacles,
                              boxed=boxed, placed=placed)
        left_out += out
    if left_out:
        notes.append(f"Too crowded to label in the plot: {'; '.join(lab.text for lab in left_out)} "
                     "(see the tables below).")


@dataclass
class _FrontConfig:
    search: _Search
    row: pd.Series
    number: int
    result: dict[str, Any]
    matrix: np.ndarray

    @property
    def name(self) -> str:
        return _trial_name(self.search, self.number)


def _front_configs(searches: list[_Search], notes: list[str]) -> list[_FrontConfig]:
    """Front rows of every search, interleaved across searches, at most MAX_FRONT_CONFIGS."""
    queues = [[(s, idx) for idx in s.front.index] for s in searches]
    total = sum(len(q) for q in queues)
    picked: list[tuple[_Search, Any]] = []
    while len(picked) < MAX_FRONT_CONFIGS and any(queues):
        for q in queues:
            if q and len(picked) < MAX_FRONT_CONFIGS:
                picked.append(q.pop(0))
    if total > len(picked):
        notes.append(f"{total} configs on the front(s); curves and matrices show {len(picked)} of them "
                     f"(best first by the first objective{', taken in turn from each search' if len(searches) > 1 else ''}).")
    out = []
    for s, idx in picked:
        row = s.table.loc[idx]
        try:
            d = s.res.result(row["trial_id"])
        except ResultsError as exc:
            notes.append(f"no curves for {s.label} trial {row['trial_id']}: {exc}")
            continue
        M = result_matrix(d, "task_il" if s.task_il else "class_il")
        if M is None:
            notes.append(f"no curves for {s.label} trial {row['trial_id']}: its result has no accuracy matrix")
            continue
        out.append(_FrontConfig(s, row, int(s.numbers.loc[idx]), d, M))
    return out


def _curves_figure(configs: list[_FrontConfig], path: Path, notes: list[str]) -> bool:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    drawn = 0
    cmap = plt.get_cmap("tab10").colors
    for i, c in enumerate(configs):
        try:
            curves = accuracy_curves(c.matrix, c.result.get("eval_sizes") or [])
        except ValueError as exc:
            notes.append(f"no curves for {c.name}: {exc}")
            continue
        steps = np.arange(1, len(curves["all_seen"]) + 1)
        lab = f"{c.name}{' (task-IL)' if c.search.task_il else ''}: {_params_text(c.search, c.row)}"
        style = dict(color=cmap[i % 10], marker=MARKERS[i % len(MARKERS)], ms=5, lw=1.6)
        axes[0].plot(steps, 100 * np.array(curves["current_task"]), label=lab, **style)
        axes[1].plot(steps, 100 * np.array(curves["all_seen"]), **style)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return False
    axes[0].set_title("accuracy on the task just learned")
    axes[1].set_title("accuracy on all classes seen so far (pooled)")
    for ax in axes:
        ax.set_xlabel("after training task")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].set_ylim(0, 102)
    fig.suptitle("Accuracy curves of the Pareto-front configs (validation split)")
    fig.legend(loc="lower center", ncol=2, fontsize=8, frameon=False)
    rows = math.ceil(drawn / 2)
    fig.tight_layout(rect=(0, 0.04 + 0.045 * rows, 1, 1))
    _save(fig, path)
    return True


def _matrices_figure(configs: list[_FrontConfig], path: Path) -> bool:
    if not configs:
        return False
    plt = _pyplot()
    import seaborn as sns

    n = len(configs)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    T = max(c.matrix.shape[0] for c in configs)
    cell = max(2.6, 0.42 * T + 1.2)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols + 1.0, cell * nrows + 0.6), squeeze=False)
    annot = T <= 12
    for i, (ax, c) in enumerate(zip(axes.flat, configs)):
        M = 100 * c.matrix
        k = M.shape[0]
        sns.heatmap(M, ax=ax, vmin=0, vmax=100, cmap="viridis", annot=annot, fmt=".0f", cbar=False,
                    mask=~np.isfinite(M), square=True, annot_kws={"fontsize": max(5, 10 - k // 2)},
                    xticklabels=[str(j + 1) for j in range(k)], yticklabels=[str(i + 1) for i in range(k)])
        final = c.row.get(c.search.col("final_acc"))
        ax.set_title(f"{c.name}{' task-IL' if c.search.task_il else ''}\nfinal {_pct(final)} %", fontsize=9)
        ax.set_xlabel("evaluated on task")
        ax.set_ylabel("after training task" if i % ncols == 0 else "")
        ax.tick_params(labelsize=8, rotation=0)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    import matplotlib as mpl
    sm = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0, 100), cmap="viridis")
    fig.colorbar(sm, ax=axes.ravel().tolist(), shrink=0.8, label="accuracy (%)")
    fig.suptitle("Accuracy matrices of the Pareto-front configs: R[i, j] = accuracy on task j after task i (%)",
                 fontsize=10)
    _save(fig, path, bbox_inches="tight")
    return True


# --------------------------------------------------------------------------
# parameter importance
# --------------------------------------------------------------------------

def _distributions(space: dict[str, Any]) -> dict[str, Any]:
    import optuna.distributions as od

    out = {}
    for name, d in space.items():
        kind = d.get("type")
        if kind == "float":
            out[name] = od.FloatDistribution(float(d["low"]), float(d["high"]), log=bool(d.get("log")))
        elif kind == "int":
            out[name] = od.IntDistribution(int(d["low"]), int(d["high"]), log=bool(d.get("log")))
        elif kind == "categorical":
            out[name] = od.CategoricalDistribution(list(d["choices"]))
        else:
            raise ResultsError(f"search.json: space entry {name!r} has unknown type {kind!r}")
    return out


def _check_space(res: SearchResults) -> None:
    """Refuse a search space Optuna cannot rebuild, before any file is written
    (the importance step rebuilds it after the Pareto figures are drawn)."""
    where = res.path / "search.json"
    for name, d in res.spec["space"].items():
        kind = d.get("type")
        if kind not in ("float", "int", "categorical"):
            raise ResultsError(f"{where}: space entry {name!r} has unknown type {kind!r} "
                               "(expected float, int or categorical)")
        try:
            _distributions({name: d})
        except (KeyError, TypeError, ValueError) as exc:
            what = f"no {exc}" if isinstance(exc, KeyError) else (str(exc).splitlines() or [""])[0]
            raise ResultsError(f"{where}: space entry {name!r} is not a valid {kind} distribution ({what})") from None


def _param_value(dist: Any, v: Any) -> Any:
    """A trials.csv cell as a value of ``dist`` (CSV reading loses the types)."""
    import optuna.distributions as od

    if _is_missing(v):
        raise ValueError("missing")
    if isinstance(dist, od.CategoricalDistribution):
        for choice in dist.choices:
            if choice == v or str(choice) == str(v):
                return choice
        raise ValueError(f"{v!r} not among the choices")
    if isinstance(dist, od.IntDistribution):
        f = float(v)
        if not f.is_integer():
            raise ValueError(f"{v!r} is not an integer")
        out = int(f)
    else:
        out = float(v)
    if not dist.low <= out <= dist.high:
        raise ValueError(f"{v!r} outside [{dist.low}, {dist.high}]")
    return out


def _importance(s: _Search) -> tuple[dict[str, dict[str, float]], list[str]]:
    """{objective label: {param: importance}} and notes, for one search."""
    res = s.res
    notes: list[str] = []
    space = res.spec["space"]
    if not space:
        return {}, [f"{s.label}: nothing was searched; no parameter importance."]
    df = res.trials
    cols = list(res.objective_columns)
    done = df[res.eligible]
    values = done[cols].apply(pd.to_numeric, errors="coerce")
    done = done[np.isfinite(values.to_numpy(dtype=float, na_value=np.nan)).all(axis=1)]
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}, [f"{s.label}: parameter importance skipped — only {len(done)} completed trial(s) "
                    f"(needs at least {MIN_TRIALS_FOR_IMPORTANCE})."]
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = _distributions(space)
    directions = ["maximize" if sense == "max" else "minimize" for sense in res.objective_columns.values()]
    study = optuna.create_study(directions=directions)
    skipped = 0
    for _, row in done.iterrows():
        try:
            params = {p: _param_value(dists[p], row.get(PARAM_PREFIX + p)) for p in dists}
        except (ValueError, TypeError):
            skipped += 1
            continue
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                  values=[float(row[c]) for c in cols]))
    if skipped:
        notes.append(f"{s.label}: {skipped} completed trial(s) left out of the importance: a parameter "
                     f"missing or outside the search space.")
    n = len(study.trials)
    if n < MIN_TRIALS_FOR_IMPORTANCE:
        notes.append(f"{s.label}: parameter importance skipped — only {n} usable completed trial(s) "
                     f"(needs at least {MIN_TRIALS_FOR_IMPORTANCE}).")
        return {}, notes
    out: dict[str, dict[str, float]] = {}
    for i, (name, sense) in enumerate(res.objectives):
        vals = [t.values[i] for t in study.trials]
        label = f"{METRIC_LABELS.get(name, name)} ({sense})"
        if len(set(vals)) < 2:
            notes.append(f"{s.label}: importance for {METRIC_LABELS.get(name, name)} skipped — every completed "
                         f"trial has the same value.")
            continue
        varied = [p for p in dists if len({t.params[p] for t in study.trials}) > 1]
        if not varied:
            notes.append(f"{s.label}: importance skipped — every completed trial has the same parameters.")
            break
        try:
            imp = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), params=varied,
                target=lambda t, i=i: t.values[i])
        except Exception as exc:  # an importance failure must not sink the report
            notes.append(f"{s.label}: importance for {name} failed ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}).")
            continue
        # Parameters with a single value among the completed trials were not evaluated: left out ("–").
        out[label] = dict(sorted(((p, float(v)) for p, v in imp.items()), key=lambda kv: -kv[1]))
        constant = [p for p in dists if p not in varied]
        if constant and i == 0:
            notes.append(f"{s.label}: {', '.join(constant)} took a single value in the completed trials; "
                         f"no importance for it.")
    return out, notes


def _importance_figure(imps: list[tuple[_Search, dict[str, dict[str, float]]]], path: Path) -> bool:
    fig = _draw_importance(imps)
    if fig is None:
        return False
    _save(fig, path)
    return True


def _draw_importance(imps: list[tuple[_Search, dict[str, dict[str, float]]]]) -> Any:
    """One bar chart per search and objective, each bar labelled with its value
    (so the figure carries the numbers and the report needs no second table of
    them); None when no search has an importance."""
    imps = [(s, d) for s, d in imps if d]
    if not imps:
        return None
    plt = _pyplot()
    ncols = max(len(d) for _, d in imps)
    nparams = max(len(v) for _, d in imps for v in d.values())
    fig, axes = plt.subplots(len(imps), ncols, figsize=(4.6 * ncols, (0.45 * nparams + 1.6) * len(imps)),
                             squeeze=False)
    for r, (s, d) in enumerate(imps):
        for c in range(ncols):
            ax = axes[r][c]
            if c >= len(d):
                ax.axis("off")
                continue
            label, values = list(d.items())[c]
            names = list(values)[::-1]
            bars = ax.barh(names, [100 * values[p] for p in names], color="tab:blue")
            ax.bar_label(bars, labels=[f"{100 * values[p]:.1f}" for p in names], padding=3, fontsize=8)
            ax.set_xlim(0, 112)  # room for the value of a bar near 100
            ax.set_xlabel("importance (% of explained variance)")
            ax.set_title(f"{s.label}: {label}", fontsize=10)
            ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle("Hyperparameter importance (Optuna fANOVA, completed trials)", fontsize=11)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------
# document: blocks rendered to markdown and to html
# --------------------------------------------------------------------------

class _Doc:
    def __init__(self) -> None:
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def ul(self, items: Sequence[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]], sortable: bool = False) -> None:
        """A table; ``sortable``: in report.html a click on a header sorts by that column (SORT_SCRIPT)."""
        self.blocks.append(("table", list(header), [list(r) for r in rows], sortable))

    def img(self, file: str, alt: str) -> None:
        self.blocks.append(("img", file, alt))

    def link(self, href: str, text: str) -> None:
        """A paragraph that is a link (a file next to the report, by a relative path)."""
        self.blocks.append(("a", href, text))

    def markdown(self) -> str:
        out: list[str] = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "ul":
                out.append("\n".join(f"- {x}" for x in b[1]))
            elif b[0] == "table":
                esc = [[str(c).replace("|", "\\|").replace("\n", " ") for c in r] for r in [b[1]] + b[2]]
                lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in esc[0]) + "|"]
                lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
                out.append("\n".join(lines))
            elif b[0] == "img":
                out.append(f"![{b[2]}]({b[1]})")
            elif b[0] == "a":
                out.append(f"[{b[2]}]({b[1]})")
        return "\n\n".join(out) + "\n"

    def html(self, folder: Path, title: str) -> str:
        e = html.escape
        body: list[str] = []
        for b in self.blocks:
            if b[0] == "h":
                body.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                body.append(f"<p>{e(b[1])}</p>")
            elif b[0] == "ul":
                body.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in b[1]) + "</ul>")
            elif b[0] == "table":
                head = "".join(f"<th>{e(str(c))}</th>" for c in b[1])
                # Short cells (numbers, "68.50 ± 0.71", ids) stay on one line -- the box scrolls --
                # while long text (a reason, a list of parameters) wraps.
                short = ' class="n"'
                rows = "".join("<tr>" + "".join(f"<td{short if len(str(c)) <= 24 else ''}>{e(str(c))}</td>"
                                                for c in r) + "</tr>" for r in b[2])
                cls = ' class="sortable"' if b[3] else ""
                # A wide table (the front's: a column per parameter and metric) scrolls inside
                # its own box instead of pushing the page past a narrow window (820 px).
                body.append(f'<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead>'
                            f"<tbody>{rows}</tbody></table></div>")
            elif b[0] == "img":
                data = base64.b64encode((folder / b[1]).read_bytes()).decode("ascii")
                body.append(f'<figure><img alt="{e(b[2])}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{e(b[2])}</figcaption></figure>")
            elif b[0] == "a":
                body.append(f'<p><a href="{e(b[1])}">{e(b[2])}</a></p>')
        style = ("body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1200px;margin:2em auto;"
                 "padding:0 1em;color:#222;line-height:1.45}table{border-collapse:collapse;margin:0.8em 0;"
                 "font-size:0.9em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
                 "th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
                 "figure{margin:1.2em 0}figcaption{color:#555;font-size:0.9em}h2{border-bottom:1px solid #ddd}"
                 "table.sortable th{cursor:pointer;user-select:none}.scroll{overflow-x:auto;max-width:100%}"
                 "td.n{white-space:nowrap}"
                 "h1{overflow-wrap:anywhere}"
                 "table.sortable th[aria-sort=ascending]::after{content:' \\25B2'}"
                 "table.sortable th[aria-sort=descending]::after{content:' \\25BC'}")
        script = f"<script>{SORT_SCRIPT}</script>\n" if any(b[0] == "table" and b[3] for b in self.blocks) else ""
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{e(title)}</title>"
                f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n" + script + "</body></html>\n")


# Sorting of the report's tables on a header click (or Enter/Space on a focused
# header), inline so report.html stays one self-contained file with no external
# script. Numbers sort as numbers, text as text (digits in it numerically);
# empty and "–" cells go last in either direction; equal keys keep their order.
# aria-sort on the header says the current order (screen readers, and the
# browser check in bench/report_browser_check.py).
SORT_SCRIPT = """
(function () {
  function key(cell) {
    var t = cell.textContent.trim();
    if (t === '' || t === '\\u2013') return null;
    var n = Number(t);
    return isNaN(n) ? t : n;
  }
  function compare(a, b) {
    if (a === null || b === null) return a === b ? 0 : (a === null ? 1 : -1);
    if (typeof a === 'number' && typeof b === 'number') return a - b;
    return String(a).localeCompare(String(b), undefined, {numeric: true});
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.tabIndex = 0;
      th.title = 'sort by this column';
      th.setAttribute('aria-sort', 'none');
      function sort() {
        var up = th.getAttribute('aria-sort') !== 'ascending';
        Array.prototype.forEach.call(heads, function (h) { h.setAttribute('aria-sort', 'none'); });
        th.setAttribute('aria-sort', up ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.map.call(body.rows, function (r, i) {
          return {row: r, key: key(r.cells[col]), i: i};
        });
        rows.sort(function (a, b) {
          var missing = (a.key === null) - (b.key === null);
          if (missing) return missing;
          return (up ? 1 : -1) * compare(a.key, b.key) || a.i - b.i;
        });
        rows.forEach(function (r) { body.appendChild(r.row); });
      }
      th.addEventListener('click', sort);
      th.addEventListener('keydown', function (ev) {
        if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); sort(); }
      });
    });
  });
})();
"""


def _spec_items(s: _Search) -> list[str]:
    spec = s.res.spec
    # The benchmark (stream protocol) and the loop settings every trial shared.
    proto = {**(spec.get("loop") or {}), **(spec.get("stream_protocol") or {})}
    df = s.res.trials
    pieces = []
    for key, label in (("dataset", "dataset"), ("tasks", "tasks"), ("classes", "classes"), ("epochs", "epochs per task"),
                       ("backbone", "backbone"), ("batch_size", "batch size"), ("precision", "precision"),
                       ("seed", "seed")):
        # A loop knob the search set or ranged per trial is shown there, not here.
        if proto.get(key) is not None and key not in spec["space"] and key not in spec["fixed"]:
            pieces.append(f"{label} {proto[key]}")
    if proto.get("task_sizes"):
        pieces.append(f"task sizes {proto['task_sizes']}")
    space = []
    for name, d in spec["space"].items():
        if d.get("type") == "categorical":
            space.append(f"{name} ∈ {{{', '.join(map(str, d.get('choices', [])))}}}")
        else:
            space.append(f"{name} ∈ [{_fmt_value(d.get('low'))}, {_fmt_value(d.get('high'))}]"
                         f"{' (log)' if d.get('log') else ''} ({d.get('type')})")
    items = [
        f"folder: {s.res.path}",
        f"method: {s.res.method}" + (" (task-incremental only)" if s.task_il else ""),
        "protocol: " + (", ".join(pieces) if pieces else "not recorded"),
        (f"trials: {len(df)} of this method, in a search of {spec.get('trials', '?')} planned across "
         f"{spec['cross_method_of']} (the method is sampled per trial) — {_status_counts(s.res)}"
         if spec.get("cross_method_of") else
         f"trials: {len(df)} found of {spec.get('trials', '?')} planned — {_status_counts(s.res)}"),
        f"objectives: {_objectives_text(s.res)}; measured on the validation split",
        _feasibility_text(s.res),
        "searched: " + ("; ".join(space) if space else "nothing"),
        "fixed: " + (", ".join(f"{k}={_fmt_value(v)}" for k, v in spec["fixed"].items()) or "nothing"),
    ]
    stream = _stream_text(s)
    if stream:
        items.append(stream)
    if spec.get("knob_kinds"):
        items.append(_knob_line(spec))
    if spec.get("created"):
        items.append(f"created: {spec['created']}")
    return items


def _stream_text(s: _Search) -> str | None:
    """Each task's classes, by name where the dataset has names (GTSRB's signs,
    an image folder's class folders, an npz's class_names), else by id; read
    from the first trial record that holds its stream."""
    for tid in s.res.trials.loc[s.res.trials["status"] != "excluded", "trial_id"]:
        try:
            stream = s.res.result(tid).get("stream") or {}
        except ResultsError:
            continue
        names, ids = stream.get("task_class_names"), stream.get("task_classes")
        tasks = names if isinstance(names, list) and names else ids
        if isinstance(tasks, list) and tasks and all(isinstance(t, list) for t in tasks):
            return "classes per task: " + "; ".join(
                f"task {i + 1}: {', '.join(str(c) for c in t)}" for i, t in enumerate(tasks))
    return None


def _knob_line(spec: dict[str, Any]) -> str:
    """The protocol/hyperparameter line (core/knobs.py): what defines the benchmark
    and stayed fixed, and which searched knobs are training or strategy knobs."""
    kinds = spec["knob_kinds"]
    proto = {**(spec.get("loop") or {}), **(spec.get("stream_protocol") or {})}
    fixed = [f"{k} {proto[k]}" for k in ("dataset", "classes", "tasks", "epochs", "eval_split")
             if proto.get(k) is not None and kinds.get(k) is None]
    fixed += [f"{k}={_fmt_value(v)}" for k, v in spec["fixed"].items() if kinds.get(k) == "protocol"]
    parts = [f"protocol (fixed): {', '.join(fixed) or 'nothing'}"]
    for kind in ("protocol", "training", "strategy"):
        names = [k for k in spec["space"] if kinds.get(k) == kind]
        if names:
            parts.append(f"searched {kind} knobs: {', '.join(names)}")
    return "; ".join(parts)


# Column headings of the metrics in the report's tables (percentages but memory).
METRIC_HEADERS = {"final_acc": "final acc %", "final_acc_pooled": "final acc pooled %", "avg_inc_acc": "avg inc acc %",
                  "forgetting": "forgetting %", "bwt": "BWT %", "plasticity": "plasticity %", "memory": "memory stored"}
FRONT_METRICS = ("final_acc", "forgetting", "avg_inc_acc", "bwt", "plasticity", "memory")


def _metric_cell(s: _Search, r: pd.Series, name: str) -> str:
    return _fmt_value(r.get("memory")) if name == "memory" else _pct(r.get(s.col(name)))


def _front_rows(s: _Search) -> tuple[list[str], list[list[str]]]:
    header = ["#", "trial_id"] + list(s.res.spec["space"]) + [METRIC_HEADERS[m] for m in FRONT_METRICS] + [
        "wall time (s)"]
    rows = []
    for idx, r in s.front.iterrows():
        rows.append([str(s.numbers.loc[idx]), str(r["trial_id"])]
                    + [_fmt_value(r.get(PARAM_PREFIX + p)) for p in s.res.spec["space"]]
                    + [_metric_cell(s, r, m) for m in FRONT_METRICS]
                    + ["–" if _is_missing(r.get("wall_time_s")) else f"{float(r['wall_time_s']):.0f}"])
    return header, rows


def _trials_rows(searches: list[_Search]) -> tuple[list[str], list[list[str]]]:
    """Every trial of every search, in start order: number, status, tasks done, the
    objectives (and the plot's two axes), then every searched parameter; a method
    column first when several searches are compared. Metrics of a trial that did
    not complete are those of the tasks it finished (its status says so)."""
    several = len(searches) > 1
    metrics: list[str] = []
    for s in searches:
        metrics += [n for n, _ in s.res.objectives if n not in metrics and n in METRIC_HEADERS]
    metrics += [m for m in ("final_acc", "forgetting") if m not in metrics]
    params: list[str] = []
    for s in searches:
        params += [p for p in s.res.spec["space"] if p not in params]
    header = (["method"] if several else []) + ["#", "trial_id", "status", "tasks done"] + [
        METRIC_HEADERS[m] for m in metrics] + params
    rows = []
    for s in searches:
        for idx, r in s.res.trials.iterrows():
            status = str(r["status"])
            rows.append(([s.label + (" (task-IL)" if s.task_il else "")] if several else [])
                        + [str(s.numbers.loc[idx]), str(r["trial_id"]), STATUS_LABELS.get(status, status),
                           _fmt_value(r.get("tasks_done"))]
                        + [_metric_cell(s, r, m) for m in metrics]
                        + [_fmt_value(r.get(PARAM_PREFIX + p)) if p in s.res.spec["space"] else "" for p in params])
    return header, rows


def _failed_rows(s: _Search) -> list[list[str]]:
    t = s.res.trials
    # Excluded trials have their own section ("Records not trusted"), and so do
    # those that did not learn ("Trials that did not learn"): neither failed.
    bad = t[~t["status"].isin(["completed", "excluded", INFEASIBLE])]
    rows = []
    for idx, r in bad.iterrows():
        msg = r.get("error")
        rows.append([str(s.numbers.loc[idx]), str(r["trial_id"]), str(r["status"]),
                     _fmt_value(r.get("tasks_done")), "" if _is_missing(msg) else str(msg),
                     _params_text(s, r)])
    return rows


def _infeasible_rows(s: _Search) -> list[list[str]]:
    """One row per trial that completed but did not learn; ``error`` holds the rule's reason."""
    t = s.res.trials
    rows = []
    for idx, r in t[t["status"] == INFEASIBLE].iterrows():
        msg = r.get("error")
        rows.append([str(s.numbers.loc[idx]), str(r["trial_id"]), _pct(r.get(s.col("final_acc"))),
                     _pct(r.get(s.col("forgetting"))), "" if _is_missing(msg) else str(msg), _params_text(s, r)])
    return rows


def _untrusted_items(s: _Search) -> list[str]:
    """One line per excluded trial (id, file, what is wrong), then the notes on trials.csv."""
    items = [f"#{s.numbers.loc[idx]} {r['trial_id']} excluded — {r['error']}" for idx, r in s.res.excluded.iterrows()]
    return items + list(s.res.notes)


def _warnings(searches: list[_Search]) -> list[str]:
    """The stderr lines of a build: each excluded trial and each note on trials.csv, naming the folder."""
    lines = []
    for s in searches:
        for _, r in s.res.excluded.iterrows():
            lines.append(f"warning: {s.res.path}: excluded trial {r['trial_id']}: {r['error']}")
        lines += [f"warning: {s.res.path}: {note}" for note in s.res.notes]
    return lines


def _combined_section(doc: "_Doc", groups: list[_Group]) -> None:
    """A comparison's fronts across methods: per group (class-IL, task-IL) of two or more
    searches the combined front, and for every group each method's hypervolume and
    the combined one against one reference point."""
    for g in groups:
        kind = "task-incremental" if g.searches[0].task_il else "class-incremental"
        names = [n for n, _ in g.objectives]
        objectives = ", ".join(f"{'maximise' if sense == 'max' else 'minimise'} {METRIC_LABELS.get(n, n)}"
                               for n, sense in g.objectives)
        if len(g.searches) > 1:
            doc.h(3, f"Combined front, {kind}")
            front = g.front
            doc.p(f"{len(front)} of {int(g.table['_eligible'].sum())} completed trial(s) of "
                  f"{', '.join(s.label for s in g.searches)} are non-dominated over all of them together on: "
                  f"{objectives}. Each method's own front follows below.")
            rows = []
            for _, r in front.iterrows():
                s = g.searches[int(r["_k"])]
                rows.append([_trial_name(s, int(r["_number"])), s.label, str(r["trial_id"])]
                            + [_objective_value(n, r[n]) for n in names]
                            + [_params_text(s, s.res.trials.iloc[int(r["_row"])])])
            doc.table(["trial", "method", "trial_id"] + [METRIC_HEADERS.get(n, n) for n in names] + ["params"], rows,
                      sortable=True)
        doc.h(3, f"Hypervolume, {kind}")
        doc.p(f"The objective space each front dominates, up to the reference point (larger is better; "
              f"{g.note}); on: {objectives}. "
              + ("Every method is measured against the same reference, so the numbers compare."
                 if len(g.searches) > 1 else ""))
        rows = []
        for k, s in enumerate(g.searches):
            mine = g.table[g.table["_k"] == k]
            rows.append([s.label, str(int(mine["_eligible"].sum())), str(int(mine["on_front"].sum())),
                         f"{g.hypervolume(k):.4f}"])
        if len(g.searches) > 1:
            rows.append(["combined", str(int(g.table["_eligible"].sum())), str(len(g.front)),
                         f"{g.hypervolume():.4f}"])
        doc.table(["front of", "completed trials", "on the combined front", "hypervolume"], rows)


def _cross_folder(searches: list[_Search]) -> str | None:
    """The ``--method`` list when ``searches`` are the methods of one search across
    methods (one folder), else None."""
    ofs = {s.res.spec.get("cross_method_of") for s in searches}
    folders = {s.res.path for s in searches}
    if len(ofs) == 1 and None not in ofs and len(folders) == 1:
        return str(next(iter(ofs)))
    return None


def _memory_budget_note(searches: list[_Search]) -> str | None:
    """A note when methods on one front store different memory and memory is no
    objective: a front across them compares different budgets."""
    if len(searches) < 2 or any("memory" in dict(s.res.objectives) for s in searches):
        return None
    spans = {}
    for s in searches:
        mem = pd.to_numeric(s.res.trials.loc[s.res.eligible, "memory"], errors="coerce").dropna()
        if len(mem):
            spans[s.label] = (int(mem.min()), int(mem.max()))
    if len(set(spans.values())) < 2:
        return None
    text = "; ".join(f"{k} {a}" if a == b else f"{k} {a}–{b}" for k, (a, b) in spans.items())
    return (f"Memory is a budget, and these methods store different amounts (exemplar images at the end: {text}); "
            f"memory is not an objective of this front, so it compares methods at different budgets. The front "
            f"per memory budget below answers \"which method and config at my budget\"; --memory-objective "
            f"searches with memory as a third objective.")


def memory_budget_fronts(g: _Group) -> list[tuple[float, pd.DataFrame]]:
    """The front among the eligible trials that store at most B exemplar images,
    for each budget B at which it changes (B runs over the trials' own memory
    values, smallest first). [] when memory is an objective already (the front
    is then per budget by construction) or every trial stores the same amount.

    A trial that enters at its own budget is exactly a point of the
    three-objective front (the objectives plus memory, minimised): nothing
    storing at most as much is at least as good on every objective."""
    names = [n for n, _ in g.objectives]
    if "memory" in names:
        return []
    t = g.table[g.table["_eligible"]]
    values = t[names + ["_memory"]].to_numpy(dtype=float, na_value=np.nan)
    t = t[np.isfinite(values).all(axis=1)]
    budgets = sorted(set(t["_memory"].tolist()))
    if len(budgets) < 2:
        return []
    out: list[tuple[float, pd.DataFrame]] = []
    previous: tuple[int, ...] | None = None
    for budget in budgets:
        within = t[t["_memory"] <= budget]
        front = within[non_dominated(within[names].to_numpy(dtype=float), g.senses)]
        key = tuple(sorted(front.index))
        if key != previous:
            out.append((budget, front))
            previous = key
    return out


def _memory_budget_section(doc: "_Doc", g: _Group) -> None:
    fronts = memory_budget_fronts(g)
    if not fronts:
        return
    names = [n for n, _ in g.objectives]
    kind = "task-incremental" if g.searches[0].task_il else "class-incremental"
    doc.h(3, f"Front per memory budget, {kind}")
    doc.p("Each row: the non-dominated trials among those that store at most that many exemplar images at the "
          "end, for every budget at which this front changes, and the best value of each objective within the "
          "budget. A trial entering at its own budget is on the three-objective front (the objectives plus "
          "memory).")
    rows = []
    for budget, front in fronts:
        members = []
        for _, r in front.sort_values(names[0], ascending=g.senses[0] == "min").iterrows():
            s = g.searches[int(r["_k"])]
            name = _trial_name(s, int(r["_number"])) if len(g.searches) > 1 else f"#{int(r['_number'])}"
            members.append(f"{name} ({', '.join(_objective_value(n, r[n]) for n in names)}; "
                           f"memory {_fmt_value(r['_memory'])})")
        best = [_objective_value(n, front[n].max() if sense == "max" else front[n].min())
                for n, sense in g.objectives]
        rows.append([f"≤ {_fmt_value(budget)}", *best, "; ".join(members)])
    doc.table(["memory budget (images)"] + [f"{'highest' if sense == 'max' else 'lowest'} {METRIC_HEADERS.get(n, n)}"
                                            for n, sense in g.objectives]
              + ["front at this budget"], rows)


def _final_section(doc: "_Doc", searches: list[_Search], out: Path) -> None:
    """The rerun's final table of each search folder that has one (search/rerun.py
    RESULTS_DIR writes final_table.md/.csv there), with its notes and a link to it."""
    have = [s for s in searches if s.final is not None or s.final_error]
    if not have:
        return
    doc.h(2, "Final table (rerun)")
    doc.p("search/rerun.py retrained the chosen configs on train + validation and measured them on the split "
          "named in each row (test, unless the rerun was told otherwise), mean ± std over seeds, next to finetune "
          "and joint under the same protocol. These are the numbers to report; the rest of this report is "
          "validation numbers of single runs.")
    for s in have:
        if len(searches) > 1:
            doc.h(3, s.res.spec.get("cross_method_of") or s.label)
        if s.final is None:
            doc.p(f"Not shown: {s.final_error}")
            continue
        doc.p(s.final.title)
        doc.table(*table_rows(s.final.table))
        doc.ul(s.final.notes)
        doc.link(os.path.relpath(s.final.md_path, out), f"final_table.md ({s.final.md_path})")


def _render(searches: list[_Search], folder: Path, color: str | None, out: Path | None = None) -> list[str]:
    """Write every file of the report into ``folder``; return their names, report.html last.
    ``out``: where the files will end up (links to other files are relative to it)."""
    out = folder if out is None else out
    notes: list[str] = []
    figures: list[tuple[str, str]] = []
    class_il = [s for s in searches if not s.task_il]
    task_il = [s for s in searches if s.task_il]
    if class_il:
        notes += _pareto_figure(class_il, color, folder / "pareto.png", task_il=False)
        figures.append(("pareto.png", "Final accuracy vs average forgetting, class-incremental; "
                                      "circled points form the Pareto front (numbers = trial numbers, as in the live log, "
                                      "trials.csv and rerun.py --pick; a label with several numbers marks "
                                      "trials at the same point; a thin line leads from a label set apart "
                                      "to its point). Trials that did not complete are in the right-hand "
                                      "panel, at the partial metrics of the tasks they finished"))
    if task_il:
        notes += _pareto_figure(task_il, color, folder / "pareto_task_il.png", task_il=True)
        figures.append(("pareto_task_il.png", "Task-incremental methods (task identity at test time): final "
                                              "accuracy vs forgetting on the task-IL metrics — a separate front"))
    configs = _front_configs(searches, notes)
    if _curves_figure(configs, folder / "front_curves.png", notes):
        figures.append(("front_curves.png", "Accuracy after each task for the front configs"))
    if _matrices_figure(configs, folder / "front_matrices.png"):
        figures.append(("front_matrices.png", "Accuracy matrices of the front configs (%)"))
    importances = []
    imp_notes: list[str] = []
    for s in searches:
        imp, n = _importance(s)
        importances.append((s, imp))
        imp_notes += n
    importance_png = _importance_figure(importances, folder / "importance.png")

    # ---- the document
    cross = _cross_folder(searches)
    title = ("Search report: " + searches[0].label if len(searches) == 1
             else f"Search report: one search across methods ({', '.join(s.label for s in searches)})" if cross
             else "Search comparison: " + ", ".join(s.label for s in searches))
    doc = _Doc()
    doc.h(1, title)
    doc.p(f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} from the result files. Accuracies are percentages "
          "on the validation split; forgetting is the average forgetting of Chaudhry et al. 2018 (max over "
          "earlier steps minus final, last task excluded); BWT is backward transfer (Lopez-Paz & Ranzato 2017). "
          "Only completed trials compete for a front; diverged, failed and stopped-early trials never do, "
          "nor do trials that did not learn (the rule under Search) or whose record failed the checks on read.")
    doc.h(2, "Search" if len(searches) == 1 else "Searches")
    if cross:
        doc.p(f"One Optuna study over {', '.join(s.label for s in searches)}: each trial sampled its method first, "
              f"then that method's own knobs (search/run.py --method {cross}). Below, each method's trials as "
              f"a search of its own; the combined front under Pareto front is the search's front.")
    for s in searches:
        if len(searches) > 1:
            doc.h(3, s.label)
        doc.ul(_spec_items(s))
    untrusted = [(s, _untrusted_items(s)) for s in searches]
    if any(items for _, items in untrusted):
        doc.h(2, "Records not trusted")
        doc.p("Every result.json is checked on read: a JSON object of this format; accuracy matrices with one "
              "row per task done, each as wide as the stream, numbers in [0, 1] on and below the diagonal and "
              "null above it; metrics finite, in range and equal to what the matrix gives. A trial whose record "
              "fails, or whose folder is gone, is excluded: not on any front, not counted as completed, not in "
              "the importance. Where trials.csv disagrees with a result.json, the result.json is used.")
        for s, items in untrusted:
            if not items:
                continue
            if len(searches) > 1:
                doc.h(3, s.label)
            doc.ul(items)
    doc.h(2, "Pareto front")
    groups = [_group(g) for g in (class_il, task_il) if g]
    if len(searches) > 1:
        _combined_section(doc, groups)
    for s in searches:
        header, rows = _front_rows(s)
        if len(searches) > 1:
            doc.h(3, s.label)
        n_done = int(s.res.eligible.sum())
        n_no_learn = int((s.res.trials["status"] == INFEASIBLE).sum())
        hv = ""
        if len(searches) == 1:
            g = groups[0]
            hv = f" Hypervolume of the front: {g.hypervolume():.4f} ({g.note})."
        doc.p(f"{len(rows)} of {n_done} completed trial(s) are non-dominated on: {_objectives_text(s.res)}."
              + (f" {n_no_learn} more completed but did not learn: not eligible." if n_no_learn else "") + hv)
        if rows:
            doc.table(header, rows, sortable=True)
        else:
            doc.p("No completed trial with finite objectives: no front.")
    # the memory-budget fronts come after each search's own front table: that table is the report's
    # primary front, the one readers (and scripts) look for first under "Pareto front"
    memory_note = _memory_budget_note(searches)
    if memory_note:
        doc.p(memory_note)
    for g in groups:
        _memory_budget_section(doc, g)
    _seed_noise_section(doc, searches)
    _final_section(doc, searches, out)
    doc.h(2, "Figures")
    doc.ul(notes)
    for file, caption in figures:
        doc.img(file, caption)
    doc.h(2, "Parameter importance")
    doc.p("fANOVA importance (Optuna's FanovaImportanceEvaluator, seed 0) of each searched parameter for each "
          "objective, from a study rebuilt from the completed trials; each column sums to 100 %. With few "
          "trials (tens rather than hundreds) read it as a rough ranking, not a measurement.")
    # The figure carries the numbers on its bars: no second table of the same values.
    if importance_png:
        doc.img("importance.png", "Hyperparameter importance per objective (fANOVA), in % of the variance "
                                  "explained; a parameter left out took a single value in the completed trials")
    doc.ul(imp_notes)
    no_learn = [(s, _infeasible_rows(s)) for s in searches]
    if any(rows for _, rows in no_learn):
        doc.h(2, "Trials that did not learn")
        doc.p("These trials trained on every task, but their task-incremental plasticity (accuracy on each task "
              "right after learning it) is not the search's margin above chance (the did-not-learn rule under "
              "Search; core/feasibility.py). A model that collapsed to about one class has nothing to forget, "
              "so its forgetting is near 0 and would put it on the front although it is no trade-off. They "
              "have status infeasible in trials.csv, are on no front and not in the importance, and are drawn "
              "as grey open triangles in the Pareto plot.")
        for s, rows in no_learn:
            if not rows:
                continue
            if len(searches) > 1:
                doc.h(3, s.label)
            doc.table(["#", "trial_id", "final acc %", "forgetting %", "reason", "params"], rows)
    doc.h(2, "Failed and stopped trials")
    any_failed = False
    for s in searches:
        rows = _failed_rows(s)
        if len(searches) > 1:
            doc.h(3, s.label)
        if rows:
            any_failed = True
            doc.table(["#", "trial_id", "status", "tasks done", "message", "params"], rows)
        elif len(searches) > 1:
            doc.p("None: every trial completed.")
    if not any_failed and len(searches) == 1:
        doc.p("None: every trial completed.")
    _fidelity_section(doc, searches)
    doc.h(2, "All trials")
    doc.p("Every trial in the order they started, with its status and its objectives (percentages on the "
          "validation split; a trial that did not complete shows the metrics of the tasks it finished, one "
          "stopped at a cheap fidelity rung those of that rung's run). "
          "In report.html a click on a column heading sorts the table by it.")
    doc.table(*_trials_rows(searches), sortable=True)

    write_bytes_atomic(folder / "report.md", doc.markdown().encode("utf-8"))
    write_bytes_atomic(folder / "report.html", doc.html(folder, title).encode("utf-8"))
    return [name for name, _ in figures] + (["importance.png"] if importance_png else []) + list(DOCUMENTS)


def _fidelity_section(doc: _Doc, searches: list[_Search]) -> None:
    """Successive halving over fidelities (search/fidelity_halving.py): what
    each rung ran, promoted and cost, and the values at which trials stopped."""
    ladders = [(s, fidelity_ladder(s.res)) for s in searches if s.res.spec.get("fidelity_rungs")]
    if not ladders:
        return
    spec = ladders[0][0].res.spec
    doc.h(2, "Successive halving over fidelities")
    doc.p(f"Every trial ran its configuration through the whole task sequence at the cheapest rung first; "
          f"when that run was done, it went on -- trained again from scratch at the next rung -- only if it "
          f"ranked in the top 1/{spec.get('reduction_factor')} of the trials done at that rung so far "
          f"(promotion rule: {spec.get('promotion', 'split')}). Only runs of the top rung (the protocol itself) "
          f"compete for the front; Optuna was told the others as pruned. Seconds are the runs' recorded task "
          f"seconds (training, end-of-task work, evaluation).")
    names = [n for n, _ in ladders[0][0].res.objectives]
    for s, ladder in ladders:
        if len(ladders) > 1:
            doc.h(3, s.label)
        if ladder.empty:
            doc.p("No trial has reported a fidelity record yet.")
            continue
        rows = []
        for rung, at in ladder.groupby("rung", sort=True):
            done = at[names[0]].notna()
            rows.append([str(int(rung) + 1), str(at["fidelity"].iloc[0]), str(len(at)), str(int(done.sum())),
                         str(int(at["promoted"].sum())), f"{at['seconds'].sum():.0f}"])
        total = ladder["seconds"].sum()
        doc.table(["rung", "fidelity", "trials", "runs done", "promoted", "seconds"], rows)
        top = ladder[(ladder["rung"] == len(spec["fidelity_rungs"])) & ladder[names[0]].notna()]
        n_trials = ladder[TRIAL_NUMBER_KEY].nunique()
        if len(top):
            full = n_trials * float(top["seconds"].mean())
            doc.p(f"All runs: {total:.0f} s. Every trial at the top rung would have taken about {full:.0f} s "
                  f"({n_trials} x the mean {top['seconds'].mean():.0f} s of the {len(top)} top-rung run(s) -- an "
                  f"estimate: the promoted trials are not a random sample), so this search spent about "
                  f"{100 * total / full:.0f} % of that.")
        stopped = ladder[~ladder["promoted"] & (ladder["rung"] < len(spec["fidelity_rungs"]))
                         & ladder[names[0]].notna()]
        if len(stopped):
            doc.p("Trials stopped at a cheap rung, with the values of that rung's run (not the protocol's):")
            doc.table(["#", "trial_id", "stopped after", *(METRIC_LABELS.get(n, n) for n in names)],
                      [[str(r[TRIAL_NUMBER_KEY]), str(r["trial_id"]), f"rung {int(r['rung']) + 1} ({r['fidelity']})",
                        *(_objective_value(n, r[n]) for n in names)] for _, r in stopped.iterrows()])


def _seed_noise_section(doc: _Doc, searches: list[_Search]) -> None:
    """"Front under seed noise" (analysis/confirm.py), for the searches with
    confirmation trials (search/run.py --confirm-seeds): per front candidate
    its seeds, each objective's mean ± std over them, whether it is on the
    front before (its own seed) and after (the seed means), and which
    candidates' means dominate it.

    A search across methods confirmed its combined front (search/confirm.py:
    the front of all its trials), so its methods are read back together, one
    table named like the combined front ("icarl#3"); per method, a method's
    own front would hold points that were never confirmation candidates."""
    from analysis.confirm import confirmed_front, has_confirmations, seed_front

    if _cross_folder(searches):
        whole = searches[0].res.whole  # the one search the methods were split from
        trials = whole.trials
        table = seed_front(trials, whole.objective_columns, whole.eligible) if has_confirmations(trials) else None
        method_of = dict(zip(trials["trial_id"].astype(str), trials["method"].astype(str)))
        tables = [(searches[0], table, method_of)] if table is not None and len(table) else []
    else:
        tables = [(s, confirmed_front(s.res), None) for s in searches]
        tables = [(s, t, m) for s, t, m in tables if t is not None and len(t)]
    if not tables:
        return
    doc.h(2, "Front under seed noise")
    doc.p("Each point of the front was measured with one training seed. Every front candidate was rerun with "
          "more seeds (confirmation trials: same configuration, same validation split, loop seed = the "
          "search's seed + 1, + 2, ...; rows with 'confirms' in trials.csv); the front is then recomputed on the "
          "seed means, among the candidates. A candidate off the front after is one whose dominance did not "
          "survive the noise: the candidates named under 'dominated by' beat its mean. Std is the sample "
          "standard deviation over the seeds (– with one seed).")
    for s, t, method_of in tables:
        if len(searches) > 1 and method_of is None:
            doc.h(3, s.label)
        if method_of is not None:
            doc.p("The search's combined front (all methods together), as its confirmation phase ran it.")
        _seed_noise_table(doc, s, t, method_of)


def _seed_noise_table(doc: _Doc, s: _Search, t: pd.DataFrame, method_of: dict[str, str] | None) -> None:
    """One "Front under seed noise" table; ``method_of`` (trial id -> method)
    names candidates across methods ("icarl#3") and adds a method column."""
    from analysis.confirm import MEAN, STD, survival_text
    from core.objectives import OBJECTIVES

    cols = list(s.res.objective_columns)

    def fmt(name: str, mean: float, std: float) -> str:
        scale = 100.0 if OBJECTIVES.get(name) is None or OBJECTIVES[name].percent else 1.0
        if not math.isfinite(mean):
            return "–"
        m = f"{scale * mean:.1f}" if scale == 100.0 else f"{mean:.0f}"
        sd = "–" if not math.isfinite(std) else (f"{scale * std:.1f}" if scale == 100.0 else f"{std:.0f}")
        return f"{m} ± {sd}"

    def name(number, trial_id: str) -> str:
        if method_of is None:
            return _fmt_value(number)
        return f"{method_of.get(str(trial_id), '?')}#{_fmt_value(number)}"

    ids = dict(zip(t[TRIAL_NUMBER_KEY], t["trial_id"]))
    header = (["#"] + (["method"] if method_of is not None else []) + ["trial_id", "seeds"]
              + [f"{METRIC_LABELS.get(n, n)}{' %' if OBJECTIVES.get(n) is None or OBJECTIVES[n].percent else ''}"
                 f" mean ± std" for n, _ in s.res.objectives]
              + ["front before", "front after", "dominated by"])
    rows = []
    for _, r in t.iterrows():
        seeds = f"{int(r['seeds'])} ({r['seed_list']})" + (f"; did not learn on {int(r['no_learn'])}"
                                                              if r["no_learn"] else "")
        rows.append([name(r[TRIAL_NUMBER_KEY], r["trial_id"])]
                    + ([method_of.get(str(r["trial_id"]), "?")] if method_of is not None else [])
                    + [str(r["trial_id"]), seeds]
                    + [fmt(n, float(r[c + MEAN]), float(r[c + STD])) for (n, _), c in zip(s.res.objectives, cols)]
                    + ["yes", "yes" if r["front_after"] else "no",
                       ", ".join(name(x, ids.get(x, "")) if method_of is not None else f"#{x}"
                                 for x in r["dominated_by"]) or "–"])
    short = int((t["seeds"] < 1 + int(s.res.spec.get("confirm_seeds") or 0)).sum())
    doc.p(f"{survival_text(t)} (the front recomputed on the seed means)."
          + (f" {short} candidate(s) have fewer confirmations than asked (failed or not run yet)."
             if short else ""))
    doc.table(header, rows)


def _swap_in(build: Path, out: Path, names: list[str]) -> None:
    """Move the finished files of ``build`` over those of ``out``, one ``os.replace``
    each (atomic per file; report.html, which names the others, last), then
    remove the figures of the previous report that this one did not draw."""
    for name in names:
        (build / name).replace(out / name)
    for name in FIGURES:
        if name not in names:
            (out / name).unlink(missing_ok=True)


def build_report(results_dirs: Sequence[str | Path], out_dir: str | Path | None = None,
                 color: str | None = None, warn: Callable[[str], None] | None = None,
                 before_write: Callable[[Path], None] | None = None) -> Path:
    """Write the report of one search (or a comparison of several); return the path of report.html.

    ``out_dir`` defaults to the results folder itself, or for several a new
    folder beside the first (``comparison_dir``). ``color``: a parameter (or trials.csv column) to colour the
    points by; default the memory budget when memory is searched. ``warn``:
    called with one line per excluded trial and per note on trials.csv once
    the report is written (default: print to stderr). ``before_write``: called
    with the output folder after every check and before the first write (the
    command line takes the folder's lock there).

    Raises ResultsError (one line) for unreadable folders, an unknown
    ``color`` or search-space type, all before any file is written;
    ReportWriteError when the files cannot be written (a full disk). On any
    failure the previous report in ``out_dir`` is left byte-identical.
    """
    dirs = [Path(d) for d in results_dirs]
    if not dirs:
        raise ResultsError("no results folder given")
    # A search across methods (search/run.py --method a,b,c) is drawn as one
    # search per method: each method's own front, colour and hypervolume, and
    # their combined front (which is the search's own front).
    loaded = [sub for d in dirs for sub in load_search(d).by_method()]
    searches = [_prepare(r, lab) for r, lab in zip(loaded, _labels(loaded))]
    seen_folders: set[Path] = set()
    for s in searches:
        if s.res.path in seen_folders:  # one final table per folder, shown once
            s.final, s.final_error = None, None
        seen_folders.add(s.res.path)
    for s in searches:
        _check_space(s.res)
        if color is not None:
            _color_column(s, color)  # an unknown parameter is refused here, not halfway through the figures
    if out_dir is None:
        out_dir = dirs[0] if len(dirs) == 1 else comparison_dir(dirs, [s.res.method for s in searches])
    out = Path(out_dir)
    if before_write is not None:
        before_write(out)

    created = not out.exists()
    build: Path | None = None
    swapping = False
    try:
        out.mkdir(parents=True, exist_ok=True)
        # Same filesystem as the destination, so each os.replace below is a rename.
        build = Path(tempfile.mkdtemp(prefix=BUILD_PREFIX, dir=out))
        names = _render(searches, build, color, out)
        swapping = True
        _swap_in(build, out, names)
    except OSError as exc:
        state = ("the report there may be partly replaced" if swapping
                 else "the previous report is unchanged")
        raise ReportWriteError(f"cannot write the report in {out}: {exc.strerror or exc}; {state}") from None
    finally:
        if build is not None:
            shutil.rmtree(build, ignore_errors=True)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a failed first build leaves no empty folder either
    for line in _warnings(searches):
        (warn or _print_warning)(line)
    return out / "report.html"


def comparison_dir(dirs: Sequence[Path], methods: Sequence[str]) -> Path:
    """Where a comparison goes by default: ``compare-<methods>-<time>/`` beside the
    first results folder (``results/compare-icarl-der-20260101-120000``), with
    ``-2``, ``-3``, ... when that name is taken, so a second comparison never
    overwrites the first and no search folder is written into."""
    names: list[str] = []
    for m in methods:
        clean = re.sub(r"[^A-Za-z0-9_.]+", "_", m).strip("._") or "search"
        if clean not in names:
            names.append(clean)
    base = Path(dirs[0]).resolve().parent / f"compare-{'-'.join(names)}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def _print_warning(line: str) -> None:
    print(line, file=sys.stderr)


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="analysis/report.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dirs", nargs="+", metavar="RESULTS_DIR", help="search results folder(s)")
    p.add_argument("--out", default=None, help="output folder (default: the results folder, or for several "
                                               "a new compare-<methods>-<time> folder beside the first)")
    p.add_argument("--color", default=None, metavar="PARAM",
                   help="colour the points by this parameter (default: memory when it is searched)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from core.lock import FolderLock

    dirs = [Path(d) for d in args.results_dirs]
    # The report is written into the results folder, a new comparison folder or
    # --out: refused while a search or rerun writes there. Taken once the folders
    # have been read and checked (build_report says where it will write), so a
    # refused build changes nothing.
    held: dict[str, Any] = {}

    def take_lock(out: Path) -> None:
        held["created"] = not out.exists()
        held["lock"] = lock = FolderLock(out, "report")
        stale = lock.acquire()
        if stale:
            print(f"{out}: {stale}", file=sys.stderr)

    try:
        path = build_report(dirs, Path(args.out) if args.out else None, args.color, before_write=take_lock)
    except (UserError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    finally:
        if "lock" in held:
            lock = held["lock"]
            lock.release()
            if held["created"] and lock.folder.is_dir() and not any(lock.folder.iterdir()):
                lock.folder.rmdir()  # a failed build into a new folder leaves no folder
    print(path)
    return 0


def entry() -> None:
    """The installed console command (pyproject.toml [project.scripts])."""
    sys.exit(cli_main(main))


if __name__ == "__main__":
    # cli_main: anything unexpected is still one line (traceback kept in a log), never a bare traceback.
    sys.exit(cli_main(main))

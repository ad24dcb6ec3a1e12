"""Read and validate a search results folder (files only, no live Ray objects).

A search folder, as ``search/run.py`` writes it::

    RESULTS_DIR/
      search.json                 the spec ("format": "clsearch-search/1")
      trials.csv                  one row per trial (built by ``trials_frame_from_results``)
      trials/<trial_id>/result.json   one run (docs/RESULT_FORMAT.md, plus "trial_id", "params")

``trials_frame_from_results`` is the ONE place that turns result files into
trial rows: the search driver writes trials.csv with ``write_trials_csv`` and
the report reads it back with ``load_search``.

Trial status in trials.csv (never the raw result status alone):

* ``error`` / ``diverged``: as recorded in result.json (the error message kept);
* ``truncated``: the result says ``running`` or ``completed`` but fewer tasks
  were done than the stream has (a trial an ASHA scheduler stopped, or one
  whose process died) -- its metrics are partial (forgetting after one task is
  0) and it must never reach a Pareto front; also a trial that successive
  halving over fidelities (search/fidelity_halving.py) stopped after a cheap
  run of the whole sequence (its ``fidelity`` record's rung is below the top):
  its metrics are not the protocol's;
* ``running``: a trial id the caller says is still in flight (``running=``);
* ``completed``: all tasks done. Only these are eligible for a front;
* ``infeasible``: all tasks done, but the trial did not learn
  (``core.feasibility``: its plasticity is not the search's margin above
  chance; the margin is search.json's ``min_plasticity_margin``, the default
  for a folder written before it). A collapsed model has nothing to forget, so
  its forgetting would put it on a front; it is never eligible. ``error`` holds
  the reason. The rule is applied on read, from the matrices, so an old folder
  gets it too (result.json's own ``feasible`` field is not trusted);
* ``excluded``: a record that cannot be trusted (``check_result``), or a trial
  that trials.csv names but whose folder or result.json is gone. Its ``error``
  says why in one line, starting with the kind (``bad record: ...`` or
  ``missing record: ...``) and naming the file. Its numbers are never read.

Nothing recorded is trusted as it stands. ``check_result`` validates every
result.json on read: an object of this format; accuracy matrices with one row
per task done, each row as wide as the stream, the lower triangle (diagonal
included) filled with numbers in [0, 1] and the rest null; ``eval_sizes`` one
positive count per row; recorded metrics finite numbers in their range
(accuracies in [0, 1], forgetting and BWT in [-1, 1]) that agree with the
matrix they summarise; counts and times non-negative numbers. A record that
fails is excluded, never fatal: one bad file must not block the report of the
others.

trials.csv is the driver's index of the result files, derived from them. When
both exist the result.json wins: every row is rebuilt from its result.json,
and a row whose cells are not numbers or disagree with that file is reported
in ``SearchResults.notes`` (one line each), not used. A result.json that
trials.csv does not list (written after it) is read too, with a note.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from core.errors import UserError
from core.fidelity import RECORD_KEY as FIDELITY_RECORD_KEY, below_top, describe
from core.feasibility import check_result as check_feasibility, margin_from_spec
from core.files import write_text_atomic
from core.protocol import upgrade_search_spec
from core.methods import is_cross_method, spec_fixed, spec_methods, spec_space
from core.result import CONFIRMS_KEY, RESULT_FORMAT, SEARCH_FORMAT, TRIAL_NUMBER_KEY

from core.metrics import SUMMARY_KEYS, WORST_VALUE, as_matrix, summarize

__all__ = [
    "SEARCH_FORMAT",
    "RESULT_FORMAT",
    "STATUSES",
    "BAD_RECORD",
    "MISSING_RECORD",
    "EXCLUSION_KINDS",
    "METRIC_RANGE",
    "exclusion_kind",
    "ResultsError",
    "SearchResults",
    "load_search",
    "read_search_spec",
    "read_result",
    "check_result",
    "trials_frame_from_results",
    "write_trials_csv",
    "result_matrix",
    "trial_number",
    "objective_column",
]

STATUSES = ("completed", "infeasible", "diverged", "error", "truncated", "running", "excluded")
# Why a trial is excluded: the first word(s) of its ``error`` cell, so the kind
# survives a round trip through trials.csv without a column of its own.
BAD_RECORD = "bad record"
MISSING_RECORD = "missing record"
EXCLUSION_KINDS = (BAD_RECORD, MISSING_RECORD)
TASK_IL_PREFIX = "task_il."
PARAM_PREFIX = "param."
TAIL_COLUMNS = ("memory", "num_params", "tasks_done", "wall_time_s", "started_at")
# The trial's loop seed (result.json ``protocol.seed``) and, for a confirmation
# trial (search/confirm.py), the number of the front candidate it reruns.
SEED_COLUMN = "seed"
CONFIRMS_COLUMN = CONFIRMS_KEY


class ResultsError(UserError, ValueError):
    """A results folder or one of its files is missing, of another version, or unreadable."""


# --------------------------------------------------------------------------
# reading single files
# --------------------------------------------------------------------------

class _Unreadable(Exception):
    """A file that cannot be read or parsed; the message says why, without the path."""


def _parse_json(path: Path) -> Any:
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise _Unreadable("is not text (not UTF-8)") from None
    except OSError as exc:
        raise _Unreadable(f"cannot be read ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}: {exc.msg}"
        if not text.strip():
            raise _Unreadable("is not valid JSON (the file is empty)") from None
        raise _Unreadable(f"is not valid JSON ({where}; truncated or corrupt?)") from None


def _read_json(path: Path) -> Any:
    try:
        return _parse_json(path)
    except _Unreadable as exc:
        raise ResultsError(f"{path} {exc}") from None


def _check_dir(results_dir: str | Path) -> Path:
    path = Path(results_dir)
    if not path.exists():
        raise ResultsError(f"results folder {path} does not exist")
    if not path.is_dir():
        raise ResultsError(f"{path} is not a folder")
    if not any(path.iterdir()):
        raise ResultsError(f"results folder {path} is empty (no search.json, no trials)")
    return path


def read_search_spec(results_dir: str | Path) -> dict[str, Any]:
    """search.json of ``results_dir``, checked (format, objectives)."""
    path = _check_dir(results_dir)
    spec_file = path / "search.json"
    if not spec_file.is_file():
        raise ResultsError(f"{path} has no search.json: not a search results folder")
    spec = _read_json(spec_file)
    if not isinstance(spec, dict):
        raise ResultsError(f"{spec_file} must hold a JSON object")
    spec = upgrade_search_spec(spec)  # a format-1 folder reads as format 2
    fmt = spec.get("format")
    if fmt != SEARCH_FORMAT:
        raise ResultsError(f"{spec_file} has format {fmt!r}; this version reads {SEARCH_FORMAT!r}")
    objectives = spec.get("objectives")
    if (not isinstance(objectives, list) or not objectives
            or not all(isinstance(o, (list, tuple)) and len(o) == 2 and o[1] in ("max", "min") for o in objectives)):
        raise ResultsError(f"{spec_file}: 'objectives' must be a list of [name, 'max'|'min'], got {objectives!r}")
    for key in ("space", "fixed", "stream_protocol", "loop"):
        spec.setdefault(key, {})
        if spec[key] is None:
            spec[key] = {}
        if not isinstance(spec[key], dict):
            raise ResultsError(f"{spec_file}: {key!r} must be a JSON object, got {_show(spec[key])}")
    bad = [name for name, dist in spec["space"].items() if not isinstance(dist, dict)]
    if bad:
        raise ResultsError(f"{spec_file}: space entry {bad[0]!r} must be an object with a 'type', "
                           f"got {_show(spec['space'][bad[0]])}")
    if "methods" in spec:  # a search across methods
        methods, spaces = spec["methods"], spec.get("spaces")
        if not isinstance(methods, list) or not methods or not all(isinstance(m, str) for m in methods):
            raise ResultsError(f"{spec_file}: 'methods' must be a list of method names, got {_show(methods)}")
        if (not isinstance(spaces, dict)
                or not all(isinstance(spaces.get(m), dict) and all(isinstance(d, dict) for d in spaces[m].values())
                           for m in methods)):
            raise ResultsError(f"{spec_file}: 'spaces' must map each of {', '.join(methods)} to its space")
        if not isinstance(spec.get("fixed_by_method", {}), dict):
            raise ResultsError(f"{spec_file}: 'fixed_by_method' must be a JSON object")
    spec.setdefault("task_incremental_only", False)
    try:
        margin_from_spec(spec)
    except ValueError as exc:
        raise ResultsError(f"{spec_file}: {exc}") from None
    return spec


def read_result(path: str | Path) -> dict[str, Any]:
    """One result.json, checked to be a result of the supported format."""
    path = Path(path)
    d = _read_json(path)
    if not isinstance(d, dict):
        raise ResultsError(f"{path} must hold a JSON object")
    if d.get("format") != RESULT_FORMAT:
        raise ResultsError(f"{path} has format {d.get('format')!r}; this version reads {RESULT_FORMAT!r}")
    return d


def trial_number(d: dict[str, Any], trial_id: str) -> int | None:
    """The trial's number (``core.result.TRIAL_NUMBER_KEY``: its Optuna trial
    number, in start order) as its record gives it; for a record from before
    trial numbers, the digits after the last '_' of a Ray Tune trial id
    ("3fa2c_00012" -> 12); None when neither says."""
    number = d.get(TRIAL_NUMBER_KEY) if isinstance(d, dict) else None
    if _is_count(number) and number >= 0:
        return int(number)
    m = re.search(r"_(\d+)$", str(trial_id))
    return int(m.group(1)) if m else None


def _tasks_done(d: dict[str, Any]) -> int:
    rows = d.get("acc_task_il") or d.get("acc_class_il") or []
    return len(rows) if isinstance(rows, list) else 0


def _num_tasks(d: dict[str, Any], spec: dict[str, Any]) -> int | None:
    n = (d.get("stream") or {}).get("num_tasks")
    return int(n) if n is not None else spec_num_tasks(spec)


def spec_num_tasks(spec: dict[str, Any]) -> int | None:
    """Tasks of a search's stream, from its stream protocol (None if unknown)."""
    protocol = spec.get("stream_protocol")
    if not isinstance(protocol, dict):
        return None
    if _is_count(protocol.get("tasks")) and protocol["tasks"] >= 1:
        return int(protocol["tasks"])
    sizes = protocol.get("task_sizes")
    return len(sizes) if isinstance(sizes, list) and sizes else None


def result_matrix(d: dict[str, Any], kind: str = "class_il") -> np.ndarray | None:
    """The accuracy matrix of a result as a square k x k array (k = tasks done),
    NaN above the diagonal; None when the result has no usable matrix of that
    kind (no task done, or a task-IL-only method's class-IL matrix).

    The loop writes rows padded to the stream's width T, so a trial stopped
    after k < T tasks has k rows of length T: only the first k columns count.
    """
    if kind not in ("class_il", "task_il"):
        raise ValueError(f"kind must be 'class_il' or 'task_il', got {kind!r}")
    rows = d.get(f"acc_{kind}") or []
    k = len(rows)
    if k == 0:
        return None
    try:
        square = [list(r)[:k] for r in rows]
    except TypeError:
        return None
    if all(v is None for r in square for v in r):
        return None
    try:
        return as_matrix(square)
    except ValueError:
        return None


# --------------------------------------------------------------------------
# validating one record
# --------------------------------------------------------------------------

# The range of each summary metric of a valid matrix: the accuracies are
# fractions; forgetting and BWT are differences of two of them.
METRIC_RANGE: dict[str, tuple[float, float]] = {
    "final_acc": (0.0, 1.0), "final_acc_pooled": (0.0, 1.0), "avg_inc_acc": (0.0, 1.0),
    "plasticity": (0.0, 1.0), "forgetting": (-1.0, 1.0), "bwt": (-1.0, 1.0)}
# Recorded metrics are the loop's summarize() of the very matrix next to them,
# written with full float precision: anything beyond rounding noise is an edit.
METRIC_TOLERANCE = 1e-9


def _is_number(v: Any) -> bool:
    # bool is an int in Python, but true/false in a JSON record is not a count.
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    """A number that fits a float and is not NaN or inf (JSON allows 1e999 and a 400-digit int)."""
    try:
        return _is_number(v) and math.isfinite(v)
    except OverflowError:
        return False


def _is_count(v: Any) -> bool:
    return _finite(v) and v == int(v)


def _show(v: Any) -> str:
    """A recorded value as a message shows it: short, typed (a string stays quoted)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, int):
        return str(v) if abs(v) < 10**15 else f"{v:.6g}" if _finite(v) else "an integer too large for a float"
    if isinstance(v, str):
        text = repr(v if len(v) <= 30 else v[:27] + "...")
        return f"{text} (a string)"
    kind = {dict: "an object", list: "a list"}.get(type(v), type(v).__name__)
    return kind


def _check_matrix(key: str, m: list, width: int, k: int, nulls_allowed: bool) -> str | None:
    for i, row in enumerate(m):
        if not isinstance(row, list):
            return f"{key}[{i}] is {_show(row)}, not a row of accuracies"
        if len(row) != width:
            return f"{key}[{i}] has {len(row)} entries; every row has one per task of the stream ({width})"
        for j, v in enumerate(row):
            where = f"{key}[{i}][{j}]"
            if j > i:  # task j not trained yet after task i: nothing was measured
                if v is not None:
                    return f"{where} = {_show(v)} lies above the diagonal (task {j + 1} not trained yet) and must be null"
                continue
            if v is None:
                if nulls_allowed:
                    continue
                return f"{where} is null: the accuracy on a task already trained is missing"
            if not _is_number(v):
                return f"{where} is {_show(v)}, not a number"
            if not (_finite(v) and 0.0 <= v <= 1.0):
                return f"{where} = {_show(v)} is outside [0, 1] (accuracies are fractions)"
    return None


def check_result(d: Any, num_tasks: int | None = None, trial_id: str | None = None) -> str | None:
    """The first reason not to trust the result record ``d``, as one line; None when it is sound.

    ``num_tasks``: the stream's number of tasks when the record does not say
    (``stream.num_tasks``); ``trial_id``: the name of the record's folder, which
    the record must not contradict. What is checked (docs/RESULT_FORMAT.md):
    the format tag; both accuracy matrices have the same number k of rows, at
    most the stream's number of tasks, each row as wide as the stream, numbers
    in [0, 1] on and below the diagonal and null above it (a task-incremental-
    only method's class-IL matrix may be null throughout); ``eval_sizes`` holds
    k positive counts and ``tasks_done``, when recorded, is k; every recorded
    metric is a finite number in its range (``METRIC_RANGE``) and equals what
    its matrix gives; memory size, parameter count and train time are
    non-negative numbers (memory size required once a task is done: it can be
    an objective).
    """
    if not isinstance(d, dict):
        kind = {list: "list", str: "string", type(None): "null", bool: "boolean"}.get(type(d), "number")
        return f"holds a JSON {kind}, not an object"
    if d.get("format") != RESULT_FORMAT:
        return f"has format {d.get('format')!r}; this version reads {RESULT_FORMAT!r}"
    rid = d.get("trial_id")
    if trial_id is not None and rid is not None and str(rid) != trial_id:
        return f"records trial_id {_show(rid)}, not its folder's name {trial_id!r}"
    for key in (TRIAL_NUMBER_KEY, CONFIRMS_KEY):
        number = d.get(key)
        if number is not None and not (_is_count(number) and number >= 0):
            return f"{key} is {_show(number)}, not a trial number (0, 1, 2, ...)"
    for key in ("params", "stream", "metrics"):
        if d.get(key) is not None and not isinstance(d[key], dict):
            return f"{key} is {_show(d[key])}, not an object"
    task_only = d.get("task_incremental_only", False)
    if not isinstance(task_only, bool):
        return f"task_incremental_only is {_show(task_only)}, not true or false"

    matrices = {}
    for kind in ("class_il", "task_il"):
        m = d.get(f"acc_{kind}")
        m = [] if m is None else m
        if not isinstance(m, list):
            return f"acc_{kind} is {_show(m)}, not a list of rows"
        matrices[kind] = m
    k = len(matrices["task_il"])
    if len(matrices["class_il"]) != k:
        return (f"acc_class_il has {len(matrices['class_il'])} row(s) but acc_task_il has {k}: "
                "both have one row per task done")
    width = (d.get("stream") or {}).get("num_tasks")
    if width is None:
        width = num_tasks
    elif not _is_count(width) or width < 1:
        return f"stream.num_tasks is {_show(width)}, not a positive whole number"
    if width is None:  # no stream size anywhere: the rows must at least agree with each other
        first = matrices["task_il"][0] if k else None
        width = len(first) if isinstance(first, list) else k
    width = int(width)
    if k > width:
        return f"acc_task_il has {k} rows but the stream has {width} tasks"
    for kind, m in matrices.items():
        problem = _check_matrix(f"acc_{kind}", m, width, k, nulls_allowed=(kind == "class_il" and task_only))
        if problem:
            return problem

    sizes = d.get("eval_sizes")
    sizes = [] if sizes is None else sizes
    if not isinstance(sizes, list):
        return f"eval_sizes is {_show(sizes)}, not a list of counts"
    if len(sizes) != k:
        return f"eval_sizes has {len(sizes)} entries for {k} task(s) done (one per task evaluated)"
    for j, n in enumerate(sizes):
        if not _is_count(n) or n <= 0:
            return f"eval_sizes[{j}] is {_show(n)}, not a positive count of images"
    done = d.get("tasks_done")
    if done is not None and (not _is_number(done) or done != k):
        return f"tasks_done is {_show(done)} but the matrices have {k} row(s)"

    metrics = d.get("metrics") or {}
    for kind in ("class_il", "task_il"):
        block = metrics.get(kind)
        if block is None:
            continue
        if not isinstance(block, dict):
            return f"metrics.{kind} is {_show(block)}, not an object"
        for name in SUMMARY_KEYS:
            if name not in block:
                continue
            v, where = block[name], f"metrics.{kind}.{name}"
            if v is None:  # core.result writes NaN and inf as null
                return f"{where} is null (not a finite number when it was written)"
            if not _is_number(v):
                return f"{where} is {_show(v)}, not a number"
            lo, hi = METRIC_RANGE.get(name, (-1.0, 1.0))
            if not _finite(v):
                return f"{where} = {_show(v)} is not finite"
            if not lo <= v <= hi:
                return f"{where} = {_show(v)} is outside [{lo:g}, {hi:g}]"
        recorded = [name for name in SUMMARY_KEYS if name in block]
        if not recorded:
            continue
        M = result_matrix(d, kind)
        if M is None:
            return f"metrics.{kind} has values but acc_{kind} holds no accuracies to derive them from"
        computed = summarize(M, sizes)
        for name in recorded:
            if abs(block[name] - computed[name]) > METRIC_TOLERANCE:
                return (f"metrics.{kind}.{name} = {_show(block[name])} disagrees with its accuracy matrix, "
                        f"which gives {_show(computed[name])}")

    for key in ("memory_size", "num_params", "train_time_s"):
        v = d.get(key)
        if v is None:
            if key == "memory_size" and k:
                return "memory_size is missing (every task done records it)"
            continue
        if not _finite(v) or v < 0:
            return f"{key} is {_show(v)}, not a non-negative number"
    return None


# --------------------------------------------------------------------------
# result files -> trials table
# --------------------------------------------------------------------------

def _metric_block(d: dict[str, Any], kind: str) -> dict[str, float]:
    """The six summary metrics of one kind: as recorded, else computed from the matrix."""
    recorded = (d.get("metrics") or {}).get(kind)
    if isinstance(recorded, dict) and all(k in recorded for k in SUMMARY_KEYS):
        return {k: (math.nan if recorded[k] is None else float(recorded[k])) for k in SUMMARY_KEYS}
    M = result_matrix(d, kind)
    sizes = d.get("eval_sizes") or []
    if M is not None and len(sizes) >= M.shape[0]:
        try:
            return summarize(M, sizes)
        except ValueError:
            pass
    return {k: math.nan for k in SUMMARY_KEYS}


def _status(d: dict[str, Any], trial_id: str, tasks_done: int, num_tasks: int | None,
            running: set[str]) -> tuple[str, str | None]:
    raw = d.get("status")
    error = d.get("error")
    if raw in ("error", "diverged"):
        return raw, error or raw
    if raw not in ("running", "completed"):
        return "error", f"unknown result status {raw!r}" + (f": {error}" if error else "")
    if trial_id in running:
        return "running", None
    if num_tasks is None:
        return ("completed", None) if raw == "completed" else ("truncated", "number of tasks unknown")
    if tasks_done < num_tasks:
        return "truncated", f"stopped after {tasks_done} of {num_tasks} tasks"
    if raw == "running":  # every row there but never marked complete: not trusted for a front
        return "truncated", f"all {num_tasks} tasks evaluated but never marked completed"
    if below_top(d):
        fid = d[FIDELITY_RECORD_KEY]
        return "truncated", (f"stopped by successive halving after fidelity rung {fid['rung'] + 1} of "
                             f"{fid['top'] + 1} ({describe(fid.get('overrides'))})")
    return "completed", None


def _columns(spec: dict[str, Any], param_names: list[str]) -> list[str]:
    return ([TRIAL_NUMBER_KEY, "trial_id", "method", "status", "error"] + [PARAM_PREFIX + p for p in param_names]
            + list(SUMMARY_KEYS) + [TASK_IL_PREFIX + k for k in SUMMARY_KEYS] + list(TAIL_COLUMNS)
            + [SEED_COLUMN, CONFIRMS_COLUMN])


NUMERIC_COLUMNS = ([TRIAL_NUMBER_KEY] + list(SUMMARY_KEYS) + [TASK_IL_PREFIX + k for k in SUMMARY_KEYS]
                   + ["memory", "num_params", "tasks_done", "wall_time_s", SEED_COLUMN, CONFIRMS_COLUMN])


def _spec_tasks(spec: dict[str, Any]) -> int | None:
    n = spec_num_tasks(spec)
    return n if _is_count(n) and n >= 1 else None


def _excluded_row(trial_id: str, method: Any, kind: str, file: str, what: str,
                  params: dict[str, Any] | None = None, number: Any = None) -> dict[str, Any]:
    """The trials-table row of a trial whose numbers are not read: status
    ``excluded`` and ``error`` = "<kind>: <file>: <what>" (one line)."""
    number = _cell_number(number)
    row: dict[str, Any] = {TRIAL_NUMBER_KEY: int(number) if number is not None and number.is_integer() and number >= 0
                           else trial_number({}, trial_id), "trial_id": trial_id, "method": method, "status": "excluded",
                           "error": " ".join(f"{kind}: {file}: {what}".split())}
    row.update(params or {})
    return row


def _param_cells(params: Any) -> dict[str, Any]:
    if not isinstance(params, dict):
        return {}
    return {PARAM_PREFIX + str(k): v if not isinstance(v, (list, dict)) else json.dumps(v) for k, v in params.items()}


def _trial_row(path: Path, trial_id: str, spec: dict[str, Any], running: set[str]) -> dict[str, Any]:
    """The trials-table row of ``trials/<trial_id>/result.json``: read, checked
    (``check_result``) and summarised, or an ``excluded`` row naming the file
    and what is wrong with it. Never raises for the file's content."""
    rel = f"trials/{trial_id}/result.json"
    method = spec.get("method")
    try:
        d = _parse_json(path / rel)
    except _Unreadable as exc:
        return _excluded_row(trial_id, method, BAD_RECORD, rel, str(exc))
    problem = check_result(d, num_tasks=_spec_tasks(spec), trial_id=trial_id)
    if problem:
        params = _param_cells(d.get("params")) if isinstance(d, dict) else {}
        return _excluded_row(trial_id, method, BAD_RECORD, rel, problem, params,
                             number=d.get(TRIAL_NUMBER_KEY) if isinstance(d, dict) else None)
    done = _tasks_done(d)
    status, error = _status(d, trial_id, done, _num_tasks(d, spec), running)
    if status == "completed":
        # A run that finished but did not learn is no trade-off point (core/feasibility.py).
        verdict = check_feasibility(d, margin_from_spec(spec))
        if verdict is not None and not verdict.feasible:
            status, error = "infeasible", verdict.reason
    row: dict[str, Any] = {TRIAL_NUMBER_KEY: trial_number(d, trial_id), "trial_id": trial_id,
                           "method": d.get("method") or method, "status": status, "error": error}
    row.update(_param_cells(d.get("params")))
    task_only = bool(d.get("task_incremental_only", spec.get("task_incremental_only", False)))
    class_m = {k: math.nan for k in SUMMARY_KEYS} if task_only else _metric_block(d, "class_il")
    task_m = _metric_block(d, "task_il")
    row.update(class_m)
    row.update({TASK_IL_PREFIX + k: v for k, v in task_m.items()})
    row.update(memory=d.get("memory_size"), num_params=d.get("num_params"), tasks_done=done,
               wall_time_s=d.get("train_time_s"), started_at=d.get("started_at"))
    seed = (d.get("protocol") or {}).get("seed") if isinstance(d.get("protocol"), dict) else None
    row[SEED_COLUMN] = int(seed) if _is_count(seed) else None
    row[CONFIRMS_COLUMN] = d.get(CONFIRMS_KEY)
    return row


def _frame(rows: list[dict[str, Any]], spec: dict[str, Any]) -> pd.DataFrame:
    """The trials table of ``rows``: the columns of ``_columns`` (parameters
    first seen in a record appended after the spec's), numbers typed."""
    searched = list(spec["space"])
    for space in (spec.get("spaces") or {}).values():  # a search across methods: each method's space
        searched += [k for k in space if k not in searched] if isinstance(space, dict) else []
    param_names = searched + [k for k in spec["fixed"] if k not in searched]
    for row in rows:
        for col in row:
            if col.startswith(PARAM_PREFIX) and col[len(PARAM_PREFIX):] not in param_names:
                param_names.append(col[len(PARAM_PREFIX):])
    df = pd.DataFrame(rows, columns=_columns(spec, param_names))
    for col in list(SUMMARY_KEYS) + [TASK_IL_PREFIX + k for k in SUMMARY_KEYS] + ["wall_time_s"]:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    for col in (TRIAL_NUMBER_KEY, "memory", "num_params", "tasks_done", SEED_COLUMN, CONFIRMS_COLUMN):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    # In start order (trial number); trials without a number after, by id.
    df = df.assign(_unnumbered=df[TRIAL_NUMBER_KEY].isna()).sort_values(
        ["_unnumbered", TRIAL_NUMBER_KEY, "trial_id"], kind="stable").drop(columns="_unnumbered")
    return df.reset_index(drop=True)


def _result_ids(path: Path) -> list[str]:
    trials_dir = path / "trials"
    files = sorted(trials_dir.glob("*/result.json")) if trials_dir.is_dir() else []
    return [f.parent.name for f in files]


def trials_frame_from_results(results_dir: str | Path, running: Iterable[str] = ()) -> pd.DataFrame:
    """One row per ``trials/<id>/result.json`` (the trials.csv rows), sorted by trial id.

    Columns: trial_id, method, status, error, ``param.<name>`` for every
    searched and fixed parameter (searched first, in the order of the spec),
    the class-IL metrics (fractions; NaN for task-IL-only methods), the same
    with prefix ``task_il.``, memory (exemplars stored at the end), num_params,
    tasks_done, wall_time_s, started_at, seed (the trial's loop seed) and
    confirms (for a confirmation trial, the trial number of the front
    candidate it reruns; empty for the search's own trials). ``running``: ids of trials still in flight (the
    driver knows them); their partial rows get status ``running`` instead of
    ``truncated``. Trial folders without a result.json yet are skipped. A
    record that fails ``check_result`` (or is not JSON) gets status
    ``excluded`` and no numbers; nothing in a record makes this raise.
    """
    path = _check_dir(results_dir)
    spec = read_search_spec(path)
    running = {str(r) for r in running}
    return _frame([_trial_row(path, tid, spec, running) for tid in _result_ids(path)], spec)


def write_trials_csv(results_dir: str | Path, running: Iterable[str] = ()) -> Path:
    """Build the trials table from the result files and write ``trials.csv``
    atomically (temporary file in the same folder, then ``os.replace``)."""
    path = Path(results_dir)
    df = trials_frame_from_results(path, running=running)
    out = path / "trials.csv"
    write_text_atomic(out, df.to_csv(index=False))
    return out


def _read_trials_csv(csv: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(csv, dtype={"trial_id": str, "method": str, "status": str, "error": str},
                         keep_default_na=True)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{csv} is not a readable CSV ({str(exc).strip().splitlines()[0]})") from None
    missing = [c for c in ("trial_id", "status") if c not in df.columns]
    if missing:
        raise ResultsError(f"{csv} lacks column(s) {missing}: not a trials.csv of this version")
    if "error" not in df.columns:
        df["error"] = None
    return df


def _is_blank(v: Any) -> bool:
    try:
        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _cell_number(v: Any) -> float | None:
    """A trials.csv cell as a number (NaN when empty); None when it is text that is not one."""
    if _is_blank(v):
        return math.nan
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    try:
        return float(str(v).strip())
    except ValueError:
        return None


def _same_number(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    # trials.csv holds each float's repr (exact); the slack only absorbs a
    # spreadsheet's re-save with fewer digits, never a change of a result.
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _csv_disagreement(cells: pd.Series, row: dict[str, Any]) -> str | None:
    """How a trials.csv row differs from the row rebuilt from its result.json
    (status, every number, every parameter), in a few words; None when it does not."""
    status = cells.get("status")
    # running/truncated: the driver knew the trial was still in flight; completed/infeasible:
    # a trials.csv written before the feasibility rule (or with another margin) -- the rule is
    # applied on read from the matrices, so neither is a disagreement about the record.
    if str(status) != row["status"] and not (status == "running" and row["status"] == "truncated") \
            and {str(status), row["status"]} != {"completed", "infeasible"}:
        shown = "empty" if _is_blank(status) else repr(str(status))
        return f"status {shown} disagrees with result.json's {row['status']!r}"
    for col in NUMERIC_COLUMNS:
        if col not in cells.index:
            continue
        v = _cell_number(cells[col])
        if v is None:
            return f"{col} is {_show(str(cells[col]))}, not a number"
        want = row.get(col)
        want = math.nan if _is_blank(want) else float(want)
        if not _same_number(v, want):
            return f"{col} {_show(v)} disagrees with result.json's {_show(want)}"
    for col in cells.index:
        if not col.startswith(PARAM_PREFIX):
            continue
        a, b = cells[col], row.get(col)
        if _is_blank(a) and _is_blank(b):
            continue
        x, y = _cell_number(a), (_cell_number(b) if not isinstance(b, str) else None)
        if x is not None and y is not None and not _is_blank(a) and not _is_blank(b):
            if _same_number(x, y):
                continue
        elif not _is_blank(a) and not _is_blank(b) and str(a) == str(b):
            continue
        return f"{col} {_show(None if _is_blank(a) else a)} disagrees with result.json's {_show(None if _is_blank(b) else b)}"
    return None


def _rows_from_csv(path: Path, spec: dict[str, Any], csv_df: pd.DataFrame) -> tuple[list[dict[str, Any]], list[str]]:
    """The trials-table rows of a folder with a trials.csv, and the notes on it.

    trials.csv is the driver's index of the result files, so its rows say
    which trials there are; each row's numbers are rebuilt from its
    result.json (checked like any record), because the csv is derived from it
    and can be stale or edited. A row naming a trial whose folder or
    result.json is gone is excluded (nothing left to check its numbers
    against); a result.json that the csv does not list is added.
    """
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    seen: set[str] = set()
    for i, (_, cells) in enumerate(csv_df.iterrows()):
        tid = cells.get("trial_id")
        line = i + 2  # 1-based, after the header line
        if _is_blank(tid) or not str(tid).strip():
            notes.append(f"trials.csv line {line} has no trial_id: left out")
            continue
        tid = str(tid).strip()
        if tid in seen:
            notes.append(f"trials.csv lists trial {tid} more than once (again on line {line}): counted once")
            continue
        seen.add(tid)
        params = {c: cells[c] for c in cells.index if c.startswith(PARAM_PREFIX) and not _is_blank(cells[c])}
        method = cells.get("method") if not _is_blank(cells.get("method")) else spec.get("method")
        if tid in (".", "..") or "/" in tid or "\\" in tid:
            rows.append(_excluded_row(tid, method, BAD_RECORD, "trials.csv",
                                      f"line {line}: trial_id {tid!r} is not a folder name", params))
            continue
        folder = path / "trials" / tid
        if not folder.is_dir():
            rows.append(_excluded_row(tid, method, MISSING_RECORD, f"trials/{tid}/",
                                      "trials.csv names this trial but its folder is missing", params,
                                      number=cells.get(TRIAL_NUMBER_KEY)))
            continue
        if not (folder / "result.json").is_file():
            rows.append(_excluded_row(tid, method, MISSING_RECORD, f"trials/{tid}/result.json",
                                      "trials.csv names this trial but its result file is missing", params,
                                      number=cells.get(TRIAL_NUMBER_KEY)))
            continue
        row = _trial_row(path, tid, spec, running=set())
        differs = _csv_disagreement(cells, row)
        if cells.get("status") == "running" and row["status"] == "truncated":
            row.update(status="running", error=None)  # the driver knew it was still in flight
        # An excluded record already says why nothing of it is used: the csv's cells add nothing.
        if differs and row["status"] != "excluded":
            notes.append(f"trials.csv row of trial {tid}: {differs}; its numbers are taken from "
                         f"trials/{tid}/result.json")
        rows.append(row)
    unlisted = [tid for tid in _result_ids(path) if tid not in seen]
    for tid in unlisted:
        rows.append(_trial_row(path, tid, spec, running=set()))
        notes.append(f"trials/{tid}/result.json is not in trials.csv (written after it?): read from the file")
    return rows, notes


def exclusion_kind(error: Any) -> str:
    """The kind of an excluded trial's ``error`` cell (``BAD_RECORD`` or ``MISSING_RECORD``)."""
    text = "" if _is_blank(error) else str(error)
    for kind in EXCLUSION_KINDS:
        if text.startswith(kind + ":"):
            return kind
    return BAD_RECORD


# --------------------------------------------------------------------------
# the whole folder
# --------------------------------------------------------------------------

def objective_column(name: str, task_incremental_only: bool) -> str:
    """trials.csv column of an objective: task-IL-only methods are measured on
    the ``task_il.*`` metrics (their class-IL metrics are undefined)."""
    if task_incremental_only and name in SUMMARY_KEYS:
        return TASK_IL_PREFIX + name
    return name


@dataclasses.dataclass
class SearchResults:
    """A loaded search folder: its spec, its trials table and lazy access to each result."""

    path: Path
    spec: dict[str, Any]
    trials: pd.DataFrame
    # One line each: what did not match between trials.csv and the result files.
    notes: list[str] = dataclasses.field(default_factory=list)
    _cache: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict, repr=False)
    # For one method of a search across methods (``by_method``): the whole search,
    # whose combined front is what its confirmation phase ran. None otherwise.
    whole: "SearchResults | None" = dataclasses.field(default=None, repr=False)

    @property
    def method(self) -> str:
        """search.json's method: one name, or "a,b,c" for a search across methods."""
        return str(self.spec.get("method"))

    @property
    def methods(self) -> list[str]:
        """The methods searched: one, or several for a search across methods."""
        return spec_methods(self.spec)

    @property
    def cross_method(self) -> bool:
        """Whether this is one search across several methods (search.json ``methods``)."""
        return is_cross_method(self.spec)

    def by_method(self) -> list["SearchResults"]:
        """A search across methods as one ``SearchResults`` per method: its rows
        (the trials table's ``method`` column; a confirmation trial goes with its
        own method, which is its candidate's), and a spec whose ``method``,
        ``space`` and ``fixed`` are that method's -- so the report can show each
        method's own front next to the combined one, as for several searches.
        Trial numbers stay those of the one study; each part's ``whole`` is
        ``self``. A single-method search: [self]."""
        if not self.cross_method:
            return [self]
        out = []
        for m in self.methods:
            spec = {k: v for k, v in self.spec.items() if k not in ("methods", "spaces", "fixed_by_method")}
            spec.update(method=m, space=spec_space(self.spec, m), fixed=spec_fixed(self.spec, m),
                        cross_method_of=self.method)
            rows = self.trials[self.trials["method"] == m].reset_index(drop=True)
            if rows.empty:
                continue
            out.append(SearchResults(path=self.path, spec=spec, trials=rows, notes=[], _cache=self._cache, whole=self))
        return out

    @property
    def task_incremental_only(self) -> bool:
        return bool(self.spec.get("task_incremental_only", False))

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """[(name, "max"|"min"), ...] as named in search.json."""
        return [(str(n), str(s)) for n, s in self.spec["objectives"]]

    @property
    def objective_columns(self) -> dict[str, str]:
        """trials.csv column -> sense, for ``pareto_table``."""
        return {objective_column(n, self.task_incremental_only): s for n, s in self.objectives}

    @property
    def num_tasks(self) -> int | None:
        return spec_num_tasks(self.spec)

    @property
    def eligible(self) -> pd.Series:
        """True for the trials that may be on a front: status ``completed``
        (an ``infeasible`` trial finished but did not learn: never eligible),
        and a trial of the search itself: a confirmation trial (``confirms``
        set) is another seed of a front candidate, never a point of its own
        (``analysis/confirm.py`` folds it into its candidate's seed mean)."""
        return (self.trials["status"] == "completed") & ~self.is_confirmation

    @property
    def is_confirmation(self) -> pd.Series:
        """True for the confirmation trials (search/confirm.py): ``confirms`` set."""
        if CONFIRMS_COLUMN not in self.trials.columns:
            return pd.Series(False, index=self.trials.index)
        return self.trials[CONFIRMS_COLUMN].notna()

    @property
    def min_plasticity_margin(self) -> float:
        """The feasibility margin the trials are judged with (``core.feasibility``)."""
        return margin_from_spec(self.spec)

    @property
    def excluded(self) -> pd.DataFrame:
        """The trials left out because their record cannot be trusted (``error`` says why)."""
        return self.trials[self.trials["status"] == "excluded"]

    def exclusion_counts(self) -> dict[str, int]:
        """{kind: number of excluded trials}, in ``EXCLUSION_KINDS`` order, kinds with none left out."""
        kinds = [exclusion_kind(e) for e in self.excluded["error"]]
        return {k: kinds.count(k) for k in EXCLUSION_KINDS if k in kinds}

    def result(self, trial_id: str) -> dict[str, Any]:
        """The full result.json of one trial (read on first use, then cached)."""
        trial_id = str(trial_id)
        if trial_id not in self._cache:
            f = self.path / "trials" / trial_id / "result.json"
            if not f.is_file():
                raise ResultsError(f"no result file for trial {trial_id!r} ({f})")
            self._cache[trial_id] = read_result(f)
        return self._cache[trial_id]


def full_fidelity_hypervolume(res: SearchResults) -> tuple[list[str], list[float]]:
    """(senses, hypervolume reference) of a finished search that the offline
    scheduler benches (bench/early_stopping_replay.py, bench/fidelity_rank.py)
    can replay: run without early stopping, with fraction objectives (the
    reference is each one's worst value). ResultsError (one line) otherwise."""
    if res.spec.get("asha") or res.spec.get("mo_asha") or res.spec.get("fidelity_rungs"):
        raise ResultsError(f"{res.path} stopped trials early itself; use a search run at full fidelity, "
                           "without early stopping")
    objectives = res.objectives
    if not all(n in WORST_VALUE for n, _ in objectives):
        raise ResultsError(f"the hypervolume needs fraction objectives; this search has "
                           f"{[n for n, _ in objectives]}")
    return [s for _, s in objectives], [WORST_VALUE[n] for n, _ in objectives]


def fidelity_ladder(res: SearchResults) -> pd.DataFrame:
    """One row per (trial, fidelity rung it ran) of a successive-halving search
    (search.json ``fidelity_rungs``; search/fidelity_halving.py), from the
    trials' result.json: ``trial_number``, ``trial_id``, ``rung`` (0 =
    cheapest), ``fidelity`` (its overrides as text, ``full`` at the top),
    each objective's value when that run was done (NaN for a run still going or
    cut short), ``seconds`` (the run's recorded task seconds so far) and
    ``promoted`` (the trial went on to the next rung). Confirmation trials and
    excluded records are left out; empty for any other search."""
    from core.result import task_seconds

    names = [n for n, _ in res.objectives]
    # The trials table's column of each objective (task_il.* for a task-incremental-only method).
    columns_of = [objective_column(n, res.task_incremental_only) for n in names]
    columns = [TRIAL_NUMBER_KEY, "trial_id", "rung", "fidelity", *names, "seconds", "promoted"]
    rows = []
    if not res.spec.get("fidelity_rungs"):
        return pd.DataFrame(columns=columns)
    for _, row in res.trials[~res.is_confirmation & (res.trials["status"] != "excluded")].iterrows():
        try:
            d = res.result(row["trial_id"])
        except ResultsError:
            continue
        fid = d.get(FIDELITY_RECORD_KEY)
        if not isinstance(fid, dict):
            continue
        current = fid.get("rung")
        for entry in fid.get("history") or []:
            metrics = entry.get("metrics") or {}
            rows.append([row[TRIAL_NUMBER_KEY], row["trial_id"], entry.get("rung"), describe(entry.get("overrides")),
                         *(float(metrics.get(n, math.nan)) for n in names), float(entry.get("seconds") or 0.0),
                         True])
        done = len(d.get("acc_class_il") or []) == res.num_tasks and d.get("status") == "completed"
        rows.append([row[TRIAL_NUMBER_KEY], row["trial_id"], current, describe(fid.get("overrides")),
                     *((float(row.get(c, math.nan)) if done else math.nan) for c in columns_of),
                     sum(task_seconds(t) for t in d.get("timings") or []), False])
    return pd.DataFrame(rows, columns=columns).sort_values([TRIAL_NUMBER_KEY, "rung"], kind="stable",
                                                            ignore_index=True)


def load_search(results_dir: str | Path) -> SearchResults:
    """Load a search folder: search.json, and the trials table.

    With a trials.csv its rows say which trials there are and each is rebuilt
    from its result.json (``_rows_from_csv``: disagreements become
    ``SearchResults.notes``); without one the table is built from
    ``trials/*/result.json`` alone. A record that cannot be trusted is a row
    with status ``excluded``, never an exception.

    Raises ResultsError (one line) for a missing or empty folder, a missing,
    corrupt or other-version search.json, an unreadable trials.csv, or no
    trials at all.
    """
    path = _check_dir(results_dir)
    spec = read_search_spec(path)
    csv = path / "trials.csv"
    notes: list[str] = []
    if csv.is_file():
        rows, notes = _rows_from_csv(path, spec, _read_trials_csv(csv))
        df = _frame(rows, spec)
    else:
        df = trials_frame_from_results(path)
    if df.empty:
        raise ResultsError(f"{path} has no trials yet (no rows in trials.csv, no trials/*/result.json)")
    return SearchResults(path=path.resolve(), spec=spec, trials=df.reset_index(drop=True), notes=notes)

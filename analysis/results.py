"""Read a search results folder (files only, no live Ray objects; DESIGN §2).

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
  0) and it must never reach a Pareto front;
* ``running``: a trial id the caller says is still in flight (``running=``);
* ``completed``: all tasks done. Only these are eligible for a front.
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
from core.files import write_text_atomic
from core.protocol import upgrade_search_spec
from core.result import RESULT_FORMAT, SEARCH_FORMAT

from core.metrics import SUMMARY_KEYS, as_matrix, summarize

__all__ = [
    "SEARCH_FORMAT",
    "RESULT_FORMAT",
    "STATUSES",
    "ResultsError",
    "SearchResults",
    "load_search",
    "read_search_spec",
    "read_result",
    "trials_frame_from_results",
    "write_trials_csv",
    "result_matrix",
    "trial_number",
    "objective_column",
]

STATUSES = ("completed", "diverged", "error", "truncated", "running")
TASK_IL_PREFIX = "task_il."
PARAM_PREFIX = "param."
TAIL_COLUMNS = ("memory", "num_params", "tasks_done", "wall_time_s")


class ResultsError(UserError, ValueError):
    """A results folder or one of its files is missing, of another version, or unreadable."""


# --------------------------------------------------------------------------
# reading single files
# --------------------------------------------------------------------------

def _read_json(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ResultsError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path} is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None


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
    spec.setdefault("space", {})
    spec.setdefault("fixed", {})
    spec.setdefault("stream_protocol", {})
    spec.setdefault("loop", {})
    spec.setdefault("task_incremental_only", False)
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


def trial_number(trial_id: str, default: int | None = None) -> int | None:
    """The trial's sequence number: the digits after the last '_' of a Ray Tune
    trial id ("3fa2c_00012" -> 12); ``default`` when there are none."""
    m = re.search(r"_(\d+)$", str(trial_id))
    return int(m.group(1)) if m else default


def _tasks_done(d: dict[str, Any]) -> int:
    rows = d.get("acc_task_il") or d.get("acc_class_il") or []
    return len(rows) if isinstance(rows, list) else 0


def _num_tasks(d: dict[str, Any], spec: dict[str, Any]) -> int | None:
    n = (d.get("stream") or {}).get("num_tasks")
    return int(n) if n is not None else spec_num_tasks(spec)


def spec_num_tasks(spec: dict[str, Any]) -> int | None:
    """Tasks of a search's stream, from its stream protocol (None if unknown)."""
    protocol = spec.get("stream_protocol") or {}
    if protocol.get("tasks") is not None:
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
    return "completed", None


def _columns(spec: dict[str, Any], param_names: list[str]) -> list[str]:
    return (["trial_id", "method", "status", "error"] + [PARAM_PREFIX + p for p in param_names]
            + list(SUMMARY_KEYS) + [TASK_IL_PREFIX + k for k in SUMMARY_KEYS] + list(TAIL_COLUMNS))


def trials_frame_from_results(results_dir: str | Path, running: Iterable[str] = ()) -> pd.DataFrame:
    """One row per ``trials/<id>/result.json`` (the trials.csv rows), sorted by trial id.

    Columns: trial_id, method, status, error, ``param.<name>`` for every
    searched and fixed parameter (searched first, in the order of the spec),
    the class-IL metrics (fractions; NaN for task-IL-only methods), the same
    with prefix ``task_il.``, memory (exemplars stored at the end), num_params,
    tasks_done, wall_time_s. ``running``: ids of trials still in flight (the
    driver knows them); their partial rows get status ``running`` instead of
    ``truncated``. Trial folders without a result.json yet are skipped.
    """
    path = _check_dir(results_dir)
    spec = read_search_spec(path)
    running = {str(r) for r in running}
    trials_dir = path / "trials"
    files = sorted(trials_dir.glob("*/result.json")) if trials_dir.is_dir() else []
    param_names = list(spec["space"]) + [k for k in spec["fixed"] if k not in spec["space"]]
    rows = []
    for f in files:
        d = read_result(f)
        trial_id = str(d.get("trial_id") or f.parent.name)
        params = d.get("params") or {}
        for k in params:
            if k not in param_names:
                param_names.append(k)
        done = _tasks_done(d)
        status, error = _status(d, trial_id, done, _num_tasks(d, spec), running)
        row: dict[str, Any] = {"trial_id": trial_id, "method": d.get("method") or spec.get("method"),
                               "status": status, "error": error}
        for k, v in params.items():
            row[PARAM_PREFIX + k] = v if not isinstance(v, (list, dict)) else json.dumps(v)
        task_only = bool(d.get("task_incremental_only", spec.get("task_incremental_only", False)))
        class_m = {k: math.nan for k in SUMMARY_KEYS} if task_only else _metric_block(d, "class_il")
        task_m = _metric_block(d, "task_il")
        row.update(class_m)
        row.update({TASK_IL_PREFIX + k: v for k, v in task_m.items()})
        row.update(memory=d.get("memory_size"), num_params=d.get("num_params"), tasks_done=done,
                   wall_time_s=d.get("train_time_s"))
        rows.append(row)
    df = pd.DataFrame(rows, columns=_columns(spec, param_names))
    for col in list(SUMMARY_KEYS) + [TASK_IL_PREFIX + k for k in SUMMARY_KEYS] + ["wall_time_s"]:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    for col in ("memory", "num_params", "tasks_done"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    return df.reset_index(drop=True)


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
    _cache: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def method(self) -> str:
        return str(self.spec.get("method"))

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
        """True for the trials that may be on a front: status ``completed``."""
        return self.trials["status"] == "completed"

    def result(self, trial_id: str) -> dict[str, Any]:
        """The full result.json of one trial (read on first use, then cached)."""
        trial_id = str(trial_id)
        if trial_id not in self._cache:
            f = self.path / "trials" / trial_id / "result.json"
            if not f.is_file():
                raise ResultsError(f"no result file for trial {trial_id!r} ({f})")
            self._cache[trial_id] = read_result(f)
        return self._cache[trial_id]


def load_search(results_dir: str | Path) -> SearchResults:
    """Load a search folder: search.json, and trials.csv (or, when the driver has
    not written it yet, the same table built from ``trials/*/result.json``).

    Raises ResultsError (one line) for a missing or empty folder, a missing,
    corrupt or other-version search.json, a corrupt file, or no trials at all.
    """
    path = _check_dir(results_dir)
    spec = read_search_spec(path)
    csv = path / "trials.csv"
    if csv.is_file():
        df = _read_trials_csv(csv)
    else:
        df = trials_frame_from_results(path)
    if df.empty:
        raise ResultsError(f"{path} has no trials yet (no rows in trials.csv, no trials/*/result.json)")
    unknown = sorted(set(df["status"].dropna()) - set(STATUSES))
    if unknown:
        raise ResultsError(f"{csv}: unknown trial status {unknown[0]!r} (expected one of {', '.join(STATUSES)})")
    return SearchResults(path=path.resolve(), spec=spec, trials=df.reset_index(drop=True))

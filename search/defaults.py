"""The measured record of every method's default config, and where it is shown.

A default config is only worth trusting if it was measured: each registered
method states where its defaults come from (``Strategy.defaults_source``: a
paper, the course notebook, a validation search, or set by hand), and this
module keeps what those defaults scored, per dataset and split, in
``bench/results/default_configs.json``. ``search/rerun.py --list`` prints both
under each method; a recorded figure whose config is no longer the method's
default is shown as stale instead of as a measurement of the new default.

No metric is computed here: the figures are those of ``analysis.final_table``
(mean ± sample std over seeds of ``analysis/metrics.py``'s final accuracy and
average forgetting, class-IL, or task-IL for a task-incremental-only method),
read from direct-run folders that ``bench/strategy_table.sh`` writes:

    DATASET=digits EVAL=val PRECISION=fp32 THREADS=1 OUT=runs/defaults-digits bash bench/strategy_table.sh
    python search/defaults.py runs/defaults-digits

Only folders named after a method are recorded (``replay+kd`` and the like are
variants, not defaults), and every seed's config must equal that method's
default config today: a run of an older default is refused, not recorded.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.results import ResultsError  # noqa: E402

RECORD = Path(__file__).resolve().parent.parent / "bench" / "results" / "default_configs.json"


def default_config(method: str) -> dict[str, Any]:
    """The method's default config as result.json stores it (JSON types: lists, not tuples)."""
    from strategies.loop import strategy_config

    return json.loads(json.dumps(dataclasses.asdict(strategy_config(method))))


def default_loop_knobs(method: str) -> dict[str, Any]:
    """The training loop knobs the method's default config sets (``Strategy.loop_defaults``)."""
    from search.spaces import method_loop_defaults

    return method_loop_defaults(method)


def is_current(entry: dict[str, Any], method: str) -> bool:
    """Whether a recorded entry measured today's default (config and loop defaults)."""
    return entry["config"] == default_config(method) and entry.get("loop_defaults", {}) == default_loop_knobs(method)


def record_key(dataset: str, eval_split: str) -> str:
    return f"{dataset}/{eval_split}"


def measure_folders(runs_root: Path) -> dict[str, dict[str, Any]]:
    """method -> its recorded entry, from ``runs_root/<method>/seed*/result.json``."""
    import strategies  # noqa: F401  (registration)
    from analysis.final_table import final_table_of_results, runs_of_folders
    from analysis.results import read_result
    from strategies import STRATEGIES

    if not Path(runs_root).is_dir():
        raise ResultsError(f"{runs_root} is not a folder (give the OUT folder of bench/strategy_table.sh)")
    folders = sorted(p for p in Path(runs_root).iterdir() if p.is_dir() and p.name in STRATEGIES)
    if not folders:
        raise ResultsError(f"{runs_root} holds no folder named after a method ({', '.join(sorted(STRATEGIES))})")
    runs = runs_of_folders(folders)
    entries: dict[str, dict[str, Any]] = {}
    for method, paths in runs.items():
        results = [read_result(path) for path in paths]
        want = default_config(method)
        want_loop = default_loop_knobs(method)
        for path, result in zip(paths, results):
            got = result.get("config") or {}
            got_loop = {k: (result.get("protocol") or {}).get(k) for k in want_loop}
            differs = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
            differs += sorted(k for k in want_loop if got_loop[k] != want_loop[k])
            if differs:
                raise ResultsError(f"{path}: not {method}'s default config today (differs in {', '.join(differs)}); "
                                   "rerun it with the current defaults")
        first = results[0]
        protocol = first.get("protocol") or {}
        entry: dict[str, Any] = {
            "config": want,
            **({"loop_defaults": want_loop} if want_loop else {}),
            "dataset": (first.get("stream") or {}).get("name"),
            "eval_split": first.get("eval_split") or protocol.get("eval_split"),
            "seeds": [r["protocol"]["seed"] for r in results],
            "protocol": {k: protocol.get(k) for k in ("epochs", "batch_size", "backbone", "augment", "precision",
                                                      "threads")},
            "cpu": (first.get("environment") or {}).get("cpu", {}).get("model"),
            "date": time.strftime("%Y-%m-%d", time.gmtime(Path(paths[0]).stat().st_mtime)),
        }
        failed = [r for r in results if r.get("status") != "completed"]
        if failed:
            # A default that diverges or fails is a measurement too: recorded as such, never averaged.
            entry["failed"] = {"count": len(failed), "statuses": sorted({str(r.get("status")) for r in failed}),
                               "first_error": failed[0].get("error")}
        else:
            row = final_table_of_results({method: results}).iloc[0]
            entry.update(metrics_kind=row["protocol"],
                         final_acc=[float(row["final_acc_mean"]), _or_none(row["final_acc_std"])],
                         forgetting=[float(row["forgetting_mean"]), _or_none(row["forgetting_std"])])
        entries[method] = entry
    return entries


def _or_none(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def read_record(path: Path = RECORD) -> dict[str, dict[str, dict[str, Any]]]:
    """``{"<dataset>/<split>": {method: entry}}``; empty when there is no record yet."""
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: unreadable default-config record ({type(exc).__name__})") from None
    if not isinstance(record, dict):
        raise ResultsError(f"{path}: not a default-config record (a JSON object of dataset/split -> method)")
    return record


def write_record(entries: dict[str, dict[str, Any]], path: Path = RECORD) -> Path:
    """Merge ``entries`` into the record under each entry's dataset/split."""
    record = read_record(path)
    for method, entry in entries.items():
        record.setdefault(record_key(entry["dataset"], entry["eval_split"]), {})[method] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path


def measured_lines(method: str, record: dict[str, dict[str, dict[str, Any]]] | None = None) -> list[str]:
    """One line per dataset/split the method's default was measured on, for ``--list``."""
    record = read_record() if record is None else record
    lines = []
    for key in sorted(record):
        entry = record[key].get(method)
        if entry is None:
            continue
        where = f"{entry['dataset']}, {entry['eval_split']} split, {len(entry['seeds'])} seed(s)"
        if not is_current(entry, method):
            lines.append(f"measured on {where}: for an older default (the config changed since); "
                         "rerun bench/strategy_table.sh and search/defaults.py")
            continue
        p = entry["protocol"]
        if entry.get("failed"):
            failed = entry["failed"]
            lines.append(f"measured on {where}: {'/'.join(failed['statuses'])} in {failed['count']} of "
                         f"{len(entry['seeds'])} seed(s) ({failed['first_error']}; {p['threads']} thread(s), "
                         f"{entry['date']})")
            continue
        lines.append(f"measured on {where}: final acc {_pm(entry['final_acc'])} %, forgetting "
                     f"{_pm(entry['forgetting'])} % ({entry['metrics_kind']}; {p['epochs']} epochs/task, "
                     f"batch {p['batch_size']}, augment {p['augment']}, {p['precision']}, {p['threads']} thread(s), "
                     f"{entry['date']})")
    return lines


def _pm(mean_std: list[float | None]) -> str:
    mean, std = mean_std
    return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Record what each method's default config scored "
                                            "(folders written by bench/strategy_table.sh).")
    p.add_argument("runs_root", help="folder holding one direct-run folder per method (seed*/result.json)")
    p.add_argument("--out", default=str(RECORD), help="the record to merge into (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        entries = measure_folders(Path(args.runs_root))
        path = write_record(entries, Path(args.out))
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for method, entry in sorted(entries.items()):
        print(f"{method}: {measured_lines(method, {record_key(entry['dataset'], entry['eval_split']): {method: entry}})[0]}")
    print(f"recorded in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

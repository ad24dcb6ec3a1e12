"""The final table: mean ± std over seeds of the test-set metrics of chosen configs.

Reads rerun ``result.json`` files only (analysis reads files, never live objects). One row
per config label; the metrics are those of ``analysis/metrics.py`` (class-IL for
class-incremental methods, task-IL for task-incremental-only ones such as
PackNet, said in the ``protocol`` column), plus train time, exemplar memory and
parameter count. The std is the sample standard deviation (ddof = 1); with one
seed it is left empty rather than printed as 0.

As a script it tabulates direct-run folders (``search/rerun.py --method M --out
DIR``, one ``seedN/result.json`` per seed), one row per folder, and says where
each method's time went (training, the end-of-task step, evaluation). A seed
that diverged or failed is never averaged in: its folder's row holds the
completed seeds only, and a note under the table says which seeds failed and
why (a folder none of whose seeds completed has no row, only that note) -- a
setting that diverges is a result too:

    python analysis/final_table.py runs/finetune runs/icarl ... --out runs
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.results import ResultsError, read_result  # noqa: E402
from core.objectives import SUMMARY_KEYS  # noqa: E402
from core.result import metrics_key  # noqa: E402

METRICS = SUMMARY_KEYS
PERCENT = set(METRICS)
OTHER = ("train_time_s", "memory_size", "num_params")


def _row(label: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    first = results[0]
    kind = metrics_key(first["task_incremental_only"])
    row: dict[str, Any] = {"config": label, "method": first["method"], "protocol": kind.replace("_", "-").upper(),
                           "seeds": len(results), "eval_split": first["eval_split"]}
    for name in METRICS:
        vals = np.array([r["metrics"][kind][name] for r in results], dtype=float)
        row[f"{name}_mean"] = vals.mean()
        row[f"{name}_std"] = vals.std(ddof=1) if len(vals) > 1 else np.nan
    for name in OTHER:
        vals = np.array([r[name] for r in results], dtype=float)
        row[f"{name}_mean"] = vals.mean()
        row[f"{name}_std"] = vals.std(ddof=1) if len(vals) > 1 else np.nan
    return row


def load_results(paths: list[Path]) -> list[dict[str, Any]]:
    """The completed runs at ``paths`` (``analysis.results.read_result``: readable,
    of the supported format); a run that did not complete is an error here."""
    out = []
    for p in paths:
        d = read_result(p)
        if d.get("status") != "completed":
            raise ResultsError(f"{p}: run status is {d.get('status')!r}, not completed")
        out.append(d)
    return out


def split_failed(runs: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Records per label -> (the completed ones per label, one note per label
    with seeds that did not complete: "LABEL: diverged in 2 of 3 seeds (first
    error)")."""
    completed, notes = {}, []
    for label, results in runs.items():
        completed[label] = [r for r in results if r.get("status") == "completed"]
        failed = [r for r in results if r.get("status") != "completed"]
        if failed:
            statuses = "/".join(sorted({str(r.get("status")) for r in failed}))
            error = next((r.get("error") for r in failed if r.get("error")), None)
            notes.append(f"{label}: {statuses} in {len(failed)} of {len(results)} seeds"
                         + (f" ({str(error).splitlines()[0]})" if error else "")
                         + ("; not in the table" if not completed[label] else "; the row holds the others"))
    return completed, notes


def final_table_of_results(runs: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """``runs`` maps a config label to its seeds' result records, already read."""
    return pd.DataFrame([_row(label, results) for label, results in runs.items() if results])


def build_final_table(runs: dict[str, list[Path]]) -> pd.DataFrame:
    """``runs`` maps a config label to its seeds' result.json paths."""
    return final_table_of_results({label: load_results(paths) for label, paths in runs.items() if paths})


def _pm(mean: float, std: float, percent: bool, digits: int = 2) -> str:
    scale = 100.0 if percent else 1.0
    text = f"{scale * mean:.{digits}f}"
    if std == std:  # not NaN
        text += f" ± {scale * std:.{digits}f}"
    return text


def table_rows(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The final table as headings and rows of text (mean ± std): what final_table.md
    shows and what the report embeds."""
    headers = ["config", "protocol", "seeds", "final acc %", "final acc pooled %", "avg inc acc %", "forgetting %",
               "BWT %", "plasticity %", "train time s", "memory (images)", "parameters"]
    rows = []
    for _, r in df.iterrows():
        cells = [str(r["config"]), str(r["protocol"]), str(r["seeds"])]
        cells += [_pm(r[f"{m}_mean"], r[f"{m}_std"], True) for m in METRICS]
        cells.append(_pm(r["train_time_s_mean"], r["train_time_s_std"], False, 1))
        cells.append(f"{r['memory_size_mean']:.0f}")
        cells.append(f"{r['num_params_mean']:.0f}")
        rows.append(cells)
    return headers, rows


def table_markdown(df: pd.DataFrame) -> str:
    headers, rows = table_rows(df)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


@dataclass
class FinalTable:
    """A final table as ``write_final_table`` left it in a folder."""

    md_path: Path
    title: str
    table: pd.DataFrame      # the columns of ``build_final_table``
    notes: list[str]


def read_final_table(folder: str | Path) -> FinalTable | None:
    """The final table in ``folder`` (final_table.csv for the numbers, final_table.md
    for its title and notes); None when there is none. Raises ResultsError (one
    line) when it is there but unreadable or not of this layout."""
    folder = Path(folder)
    csv_path, md_path = folder / "final_table.csv", folder / "final_table.md"
    if not csv_path.is_file():
        return None
    try:
        df = pd.read_csv(csv_path)
        text = md_path.read_text() if md_path.is_file() else ""
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ResultsError(f"{csv_path} is unreadable ({type(exc).__name__})") from None
    needed = ["config", "method", "protocol", "seeds", "eval_split"] + [f"{m}_{k}" for m in (*METRICS, *OTHER)
                                                                       for k in ("mean", "std")]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ResultsError(f"{csv_path} lacks column(s) {missing[:3]}: not a final table of this version")
    lines = text.splitlines()
    title = next((ln[2:].strip() for ln in lines if ln.startswith("# ")), "Final table")
    notes = [ln[2:].strip() for ln in lines if ln.startswith("- ")]
    return FinalTable(md_path=md_path, title=title, table=df, notes=notes)


def write_final_table(df: pd.DataFrame, out_dir: Path, title: str, notes: list[str] | None = None) -> tuple[Path, Path]:
    from core.files import write_text_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "final_table.csv", out_dir / "final_table.md"
    write_text_atomic(csv_path, df.to_csv(index=False))
    body = f"# {title}\n\n" + table_markdown(df)
    if notes:
        body += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    write_text_atomic(md_path, body)
    return csv_path, md_path


# Per-task timing keys written by strategies/loop.py, and what they hold.
TIME_PARTS = (("train_s", "training phases (incl. distillation / projection, DER's re-balancing and "
                          "PackNet's pruning and retraining)"),
              ("end_task_s", "end of task (memory selection, Fisher, BN recalibration)"),
              ("eval_s", "evaluation"), ("begin_task_s", "begin of task (snapshots, new extractor)"))


def time_breakdown(runs: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """Mean seconds per run spent in each part of the loop, per config label
    (its completed runs' records)."""
    rows = []
    for label, results in runs.items():
        if not results:
            continue
        row: dict[str, Any] = {"config": label}
        for key, _ in TIME_PARTS:
            row[key] = float(np.mean([sum(t.get(key, 0.0) for t in r["timings"]) for r in results]))
        row["total_s"] = float(np.mean([r["train_time_s"] for r in results]))
        images = np.mean([sum(t.get("images_trained", 0) for t in r["timings"]) for r in results])
        row["train_img_per_s"] = images / row["train_s"] if row["train_s"] > 0 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def breakdown_markdown(df: pd.DataFrame) -> str:
    headers = ["config", "total s", "train s", "end of task s", "eval s", "begin of task s", "train img/s"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for _, r in df.iterrows():
        lines.append(f"| {r['config']} | {r['total_s']:.1f} | {r['train_s']:.1f} | {r['end_task_s']:.1f} | "
                     f"{r['eval_s']:.1f} | {r['begin_task_s']:.1f} | {r['train_img_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


def runs_of_folders(folders: list[Path]) -> dict[str, list[Path]]:
    """Direct-run folders -> {folder name: [seed*/result.json, ...]}."""
    runs: dict[str, list[Path]] = {}
    for folder in folders:
        paths = sorted(folder.glob("seed*/result.json"), key=lambda p: int(p.parent.name[4:] or 0))
        if not folder.is_dir():
            raise ResultsError(f"{folder} is not a folder")
        if not paths:
            raise ResultsError(f"{folder} holds no seed*/result.json (write it with search/rerun.py --method M --out {folder})")
        if folder.name in runs:
            raise ResultsError(f"two folders are called {folder.name!r}: the row labels would clash")
        runs[folder.name] = paths
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Table of direct-run folders (mean ± std over seeds) and where the time went.")
    p.add_argument("folders", nargs="+", help="folders written by search/rerun.py --method M --out FOLDER")
    p.add_argument("--out", required=True, help="folder for final_table.md/.csv and time_breakdown.md")
    p.add_argument("--title", default="Strategies under one protocol", help="heading of final_table.md")
    p.add_argument("--note", action="append", default=[], help="line added under the table (repeatable)")
    args = p.parse_args(argv)
    try:
        runs = runs_of_folders([Path(f) for f in args.folders])
        completed, failure_notes = split_failed({label: [read_result(p) for p in paths]
                                                 for label, paths in runs.items()})
        if not any(completed.values()):
            raise ResultsError("no run completed: " + "; ".join(failure_notes))
        df = final_table_of_results(completed)
        _, md_path = write_final_table(df, Path(args.out), args.title, [*args.note, *failure_notes])
        from core.files import write_text_atomic
        breakdown = "# Where the time went (mean seconds per run)\n\n" + breakdown_markdown(time_breakdown(completed))
        write_text_atomic(Path(args.out) / "time_breakdown.md", breakdown)
    except (ResultsError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    print(md_path.read_text() + "\n" + breakdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())

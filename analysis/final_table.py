"""The final table: mean ± std over seeds of the test-set metrics of chosen configs.

Reads rerun ``result.json`` files only (DESIGN §2: analysis reads files). One row
per config label; the metrics are those of ``analysis/metrics.py`` (class-IL for
class-incremental methods, task-IL for task-incremental-only ones such as
PackNet, said in the ``protocol`` column), plus train time, exemplar memory and
parameter count. The std is the sample standard deviation (ddof = 1); with one
seed it is left empty rather than printed as 0.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.results import ResultsError

METRICS = ("final_acc", "final_acc_pooled", "avg_inc_acc", "forgetting", "bwt", "plasticity")
PERCENT = set(METRICS)
OTHER = ("train_time_s", "memory_size", "num_params")


def _row(label: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    first = results[0]
    kind = "task_il" if first["task_incremental_only"] else "class_il"
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
    out = []
    for p in paths:
        try:
            d = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ResultsError(f"{p}: unreadable result ({type(exc).__name__})") from None
        if d.get("status") != "completed":
            raise ResultsError(f"{p}: run status is {d.get('status')!r}, not completed")
        out.append(d)
    return out


def build_final_table(runs: dict[str, list[Path]]) -> pd.DataFrame:
    """``runs`` maps a config label to its seeds' result.json paths."""
    rows = [_row(label, load_results(paths)) for label, paths in runs.items() if paths]
    return pd.DataFrame(rows)


def _pm(mean: float, std: float, percent: bool, digits: int = 2) -> str:
    scale = 100.0 if percent else 1.0
    text = f"{scale * mean:.{digits}f}"
    if std == std:  # not NaN
        text += f" ± {scale * std:.{digits}f}"
    return text


def table_markdown(df: pd.DataFrame) -> str:
    headers = ["config", "protocol", "seeds", "final acc %", "final acc pooled %", "avg inc acc %", "forgetting %",
               "BWT %", "plasticity %", "train time s", "memory (images)", "parameters"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for _, r in df.iterrows():
        cells = [str(r["config"]), r["protocol"], str(r["seeds"])]
        cells += [_pm(r[f"{m}_mean"], r[f"{m}_std"], True) for m in METRICS]
        cells.append(_pm(r["train_time_s_mean"], r["train_time_s_std"], False, 1))
        cells.append(f"{r['memory_size_mean']:.0f}")
        cells.append(f"{r['num_params_mean']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_final_table(df: pd.DataFrame, out_dir: Path, title: str, notes: list[str] | None = None) -> tuple[Path, Path]:
    from strategies.result import write_text_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "final_table.csv", out_dir / "final_table.md"
    write_text_atomic(csv_path, df.to_csv(index=False))
    body = f"# {title}\n\n" + table_markdown(df)
    if notes:
        body += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    write_text_atomic(md_path, body)
    return csv_path, md_path

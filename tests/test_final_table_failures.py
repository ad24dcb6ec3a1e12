"""analysis/final_table.py as a script over direct-run folders where some seeds
diverged: the failed seeds are never averaged in, and the table says which
failed and why (a diverging setting is a result, not a reason to lose the
table of the others)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis import final_table
from tests.fixtures_results import make_result, trial_at

DIVERGED = "loss became inf in task 3 epoch 0 of phase 'train'"


def write_run(folder: Path, seed: int, final: float, status: str = "completed") -> dict:
    t = trial_at(1, final, 0.1, {"lr": 0.1})
    if status != "completed":
        t = {**t, "status": status, "error": DIVERGED}
    d = make_result({"method": "ewc", "fixed": {}}, t, "", task_incremental_only=False)
    d["protocol"]["seed"] = seed
    path = folder / f"seed{seed}" / "result.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(d))
    return d


def test_failed_seeds_are_left_out_and_named(tmp_path, capsys):
    done = [write_run(tmp_path / "stable", s, 0.5 + 0.1 * s) for s in range(2)]
    half = [write_run(tmp_path / "half", 0, 0.3, status="diverged"), write_run(tmp_path / "half", 1, 0.4)]
    for s in range(3):
        write_run(tmp_path / "unstable", s, 0.2, status="diverged")
    folders = [str(tmp_path / name) for name in ("stable", "half", "unstable")]
    assert final_table.main([*folders, "--out", str(tmp_path / "t"), "--note", "mine"]) == 0

    table = pd.read_csv(tmp_path / "t" / "final_table.csv").set_index("config")
    assert list(table.index) == ["stable", "half"]
    assert table.loc["stable", "seeds"] == 2 and table.loc["half", "seeds"] == 1
    expected = sum(d["metrics"]["class_il"]["final_acc"] for d in done) / 2
    assert abs(table.loc["stable", "final_acc_mean"] - expected) < 1e-12
    assert table.loc["half", "final_acc_mean"] == half[1]["metrics"]["class_il"]["final_acc"]
    notes = final_table.read_final_table(tmp_path / "t").notes
    assert notes == ["mine", f"half: diverged in 1 of 2 seeds ({DIVERGED}); the row holds the others",
                     f"unstable: diverged in 3 of 3 seeds ({DIVERGED}); not in the table"]
    breakdown = (tmp_path / "t" / "time_breakdown.md").read_text()
    assert "| stable |" in breakdown and "| half |" in breakdown and "unstable" not in breakdown


def test_nothing_completed_is_a_one_line_error(tmp_path, capsys):
    for s in range(2):
        write_run(tmp_path / "unstable", s, 0.2, status="diverged")
    assert final_table.main([str(tmp_path / "unstable"), "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no run completed: unstable: diverged in 2 of 2 seeds") and err.count("\n") == 1
    assert not (tmp_path / "t").exists()

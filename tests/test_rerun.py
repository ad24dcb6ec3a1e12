"""search/rerun.py: the direct run and the final table of a search folder."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.results import write_trials_csv
from tests.fixtures_results import trial_id, write_search_fixture

ROOT = Path(__file__).resolve().parent.parent
RERUN = [sys.executable, str(ROOT / "search" / "rerun.py")]

pytestmark = pytest.mark.slow  # every test runs search/rerun.py (or a table script) in subprocesses


def rerun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*RERUN, *args, "--quiet", "--threads", "1"], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def test_rerun_picked_trials_on_test_with_seeds_next_to_baselines(tmp_path):
    results = write_search_fixture(tmp_path / "search")  # icarl on the synthetic protocol, 3 tasks
    write_trials_csv(results)
    proc = rerun(str(results), "--pick", trial_id(0), "2", "--seeds", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(results / "final_table.csv")
    # Labelled by trial number and id (trials.csv numbers the fixture's trials from their ids).
    assert list(table["config"]) == [f"icarl #0 ({trial_id(0)})", f"icarl #2 ({trial_id(2)})", "finetune", "joint"]
    assert (table["seeds"] == 2).all() and (table["eval_split"] == "test").all()
    for m in ("final_acc", "avg_inc_acc", "forgetting", "plasticity"):
        assert table[f"{m}_mean"].between(-1, 1).all() and table[f"{m}_std"].notna().all()
    # Each seed's run trained on train+val (no validation split) and was scored on test.
    r = json.loads((results / "rerun" / f"icarl-{trial_id(2)}" / "seed1" / "result.json").read_text())
    assert r["eval_split"] == "test" and r["stream"]["val_sizes"] == [0, 0, 0]
    assert r["config"]["memory"] == 50 and r["config"]["selection"] == "random" and r["config"]["weight_decay"] == 1e-5
    assert r["protocol"]["seed"] == 1
    md = (results / "final_table.md").read_text()
    assert "± " in md and "finetune" in md and "joint" in md
    # Finetune forgets more than joint, on the same protocol.
    by = table.set_index("config")
    assert by.loc["finetune", "forgetting_mean"] > by.loc["joint", "forgetting_mean"]


def test_rerun_refuses_a_front_config_that_cannot_run(tmp_path):
    results = write_search_fixture(tmp_path / "search")
    write_trials_csv(results)
    # The fixture's front holds memory=2000, more than the tiny stream's images.
    proc = rerun(str(results), "--pick", "front", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "larger than the stream" in proc.stderr
    assert not (results / "final_table.csv").exists()


def test_rerun_bad_picks_and_folders_are_one_line_errors(tmp_path):
    results = write_search_fixture(tmp_path / "search")
    write_trials_csv(results)
    for args, message in [
        ([str(results), "--pick", "99"], "no such trial"),
        ([str(results), "--pick", trial_id(5)], "not completed"),
        ([str(tmp_path / "missing")], "missing"),
        ([str(results), "--method", "icarl"], "not both"),
        ([], "give RESULTS_DIR"),
    ]:
        proc = rerun(*args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and message in proc.stderr, (args, proc.stderr)


def test_direct_run_prints_matrices_and_writes_json(tmp_path):
    proc = rerun("--method", "icarl", "--set", "memory=30", "--dataset", "synthetic", "--out", str(tmp_path / "d"),
                 cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "class-incremental accuracy matrix" in proc.stdout and "average forgetting" in proc.stdout
    r = json.loads((tmp_path / "d" / "seed0" / "result.json").read_text())
    assert r["format"] == "clsearch-result/1" and r["status"] == "completed" and len(r["acc_class_il"]) == 3


def test_strategy_table_of_direct_run_folders(tmp_path):
    """analysis/final_table.py: one row per direct-run folder, means over its seeds."""
    for method in ("finetune", "replay"):
        proc = rerun("--method", method, "--dataset", "synthetic", "--seeds", "2", "--out", str(tmp_path / method),
                     cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
    table_script = [sys.executable, str(ROOT / "analysis" / "final_table.py")]
    proc = subprocess.run([*table_script, str(tmp_path / "finetune"), str(tmp_path / "replay"), "--out",
                           str(tmp_path / "table")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "table" / "final_table.csv").set_index("config")
    assert list(table.index) == ["finetune", "replay"] and (table["seeds"] == 2).all()
    runs = [json.loads((tmp_path / "replay" / f"seed{s}" / "result.json").read_text()) for s in (0, 1)]
    expected = sum(r["metrics"]["class_il"]["final_acc"] for r in runs) / 2
    assert abs(table.loc["replay", "final_acc_mean"] - expected) < 1e-12
    assert table.loc["replay", "memory_size_mean"] > 0 == table.loc["finetune", "memory_size_mean"]
    assert "train img/s" in (tmp_path / "table" / "time_breakdown.md").read_text()
    # A folder without results is a one-line error, and nothing is written.
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([*table_script, str(tmp_path / "empty"), "--out", str(tmp_path / "t2")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no seed*/result.json" in proc.stderr
    assert not (tmp_path / "t2").exists()


def test_a_rerun_keeps_finished_seeds_and_reruns_changed_ones(tmp_path):
    out = tmp_path / "d"
    args = ("--method", "replay", "--set", "memory=20", "--dataset", "synthetic", "--seeds", "2", "--out", str(out))
    assert rerun(*args, cwd=tmp_path).returncode == 0
    first = {s: (out / f"seed{s}" / "result.json").read_bytes() for s in (0, 1)}
    (out / "seed1" / "result.json").unlink()  # as if interrupted during seed 1
    proc = rerun(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "seed 0: kept the finished run" in proc.stderr and "seed 1: kept" not in proc.stderr
    assert (out / "seed0" / "result.json").read_bytes() == first[0]
    # Seed 1 retrained from scratch gives the same matrix (CPU runs are deterministic).
    again = json.loads((out / "seed1" / "result.json").read_text())
    assert again["acc_class_il"] == json.loads(first[1])["acc_class_il"]
    # A different config is not "the same run": both seeds are retrained.
    changed = ("--method", "replay", "--set", "memory=30", "--dataset", "synthetic", "--seeds", "2", "--out", str(out))
    proc = rerun(*changed, cwd=tmp_path)
    assert proc.returncode == 0 and "kept" not in proc.stderr
    assert json.loads((out / "seed0" / "result.json").read_text())["config"]["memory"] == 30

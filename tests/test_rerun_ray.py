"""search/rerun.py schedules its (config, seed) runs through Ray (search/rerun_ray.py).

A hand-made search folder (tests/fixtures_results.py) with two iCaRL trials whose
params are valid on the synthetic stream is rerun with ``--seeds 2`` and its
baselines: 8 runs on a local Ray instance, one CPU and one thread each. Checked:
more than one run trains at a time (the runs' own start/end times in their
result.json overlap), each record says it ran through Ray with 1 thread, and
the final table has one row per config; the same command again trains nothing
(every file untouched); the same runs in this process (``--sequential
--threads 1``) give the same accuracy matrices to the last bit; a run that
diverges leaves the others finished and kept, the command exits 2 naming it in
one line, and the same command again retrains only it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.results import write_trials_csv
from tests.fixtures_results import TRIALS, trial_id, write_search_fixture

ROOT = Path(__file__).resolve().parent.parent
RERUN = [sys.executable, str(ROOT / "search" / "rerun.py")]

pytestmark = pytest.mark.slow  # search/rerun.py in subprocesses, a local Ray instance

# Two trials whose configs run on the synthetic stream (the fixture's front
# holds memory=2000, more than its images); the matrices are the fixture's.
GOOD = [{**TRIALS[0], "params": {"lr": 0.1, "memory": 40, "selection": "random"}},
        {**TRIALS[1], "params": {"lr": 0.05, "memory": 30, "selection": "herding"}}]
# lr 10 (the config's upper bound) makes iCaRL's loss NaN on this stream.
DIVERGES = {**TRIALS[1], "params": {"lr": 10.0, "memory": 30, "selection": "random"}}
CONFIGS = [f"icarl #0 ({trial_id(0)})", f"icarl #1 ({trial_id(1)})", "finetune", "joint"]
FOLDERS = [f"icarl-{trial_id(0)}", f"icarl-{trial_id(1)}", "finetune", "joint"]


def search_folder(root: Path, trials: list[dict], epochs: int) -> Path:
    """The fixture folder with these trials, its protocol trained ``epochs`` per task."""
    results = write_search_fixture(root, trials=trials)
    spec = json.loads((results / "search.json").read_text())
    spec["loop"]["epochs"] = epochs  # long enough (a few seconds a run) for runs to overlap
    (results / "search.json").write_text(json.dumps(spec))
    write_trials_csv(results)
    return results


def rerun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([*RERUN, *args, "--quiet"], capture_output=True, text=True, timeout=900, cwd=cwd, env=env)


def records(folder: Path) -> dict[str, dict]:
    """'<config folder>/seed<k>' -> its result.json."""
    return {f"{p.parent.parent.name}/{p.parent.name}": json.loads(p.read_text())
            for p in sorted((folder / "rerun").glob("*/seed*/result.json"))}


@pytest.fixture(scope="module")
def through_ray(tmp_path_factory):
    """The search folder after ``rerun.py FOLDER --pick 0 1 --seeds 2`` (8 runs through Ray)."""
    root = tmp_path_factory.mktemp("rerun-ray")
    results = search_folder(root / "search", GOOD, epochs=8)
    proc = rerun(str(results), "--pick", "0", "1", "--seeds", "2", cwd=root)
    return root, results, proc


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="two runs at once need two CPUs")
def test_a_final_table_rerun_trains_its_runs_through_ray_at_once(through_ray):
    _, results, proc = through_ray
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = records(results)
    assert sorted(runs) == sorted(f"{f}/seed{s}" for f in FOLDERS for s in (0, 1))
    assert all(r["status"] == "completed" and r["through"] == "ray" for r in runs.values())
    assert {r["protocol"]["threads"] for r in runs.values()} == {1}  # one CPU from Ray, one thread
    assert all(r["node"]["ray_node_id"] for r in runs.values())
    # More than one run at a time: some two runs' training intervals overlap.
    spans = sorted((r["started"], r["ended"]) for r in runs.values())
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), spans
    assert len({r["pid"] for r in runs.values()}) > 1
    # The live view, in a search's format.
    out = proc.stdout
    assert "8 run(s) to train through Ray on this machine: up to" in out
    for config in CONFIGS:
        for seed in (0, 1):
            assert f"] run {config} seed {seed} started" in out, out
            assert f"] run {config} seed {seed} finished: final_acc " in out, out
    assert "| 8/8 runs done, 0 running | " in out and " s/run, elapsed " in out
    assert ", 1 running | " in out  # a run ended while another was training
    # The final table: one row per config, two seeds each, on test.
    table = pd.read_csv(results / "final_table.csv")
    assert list(table["config"]) == CONFIGS
    assert (table["seeds"] == 2).all() and (table["eval_split"] == "test").all()
    assert table["final_acc_std"].notna().all()
    md = (results / "final_table.md").read_text()
    assert all(f"| {config} | CLASS-IL | 2 |" in md for config in CONFIGS)


def test_the_same_command_again_trains_nothing(through_ray):
    root, results, first = through_ray
    assert first.returncode == 0, first.stderr[-3000:]
    files = sorted((results / "rerun").glob("*/seed*/result.json"))
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    proc = rerun(str(results), "--pick", "0", "1", "--seeds", "2", cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == before
    assert proc.stderr.count(": kept the finished run in ") == 8, proc.stderr
    assert "all 8 run(s) finished earlier and are kept: nothing to train" in proc.stdout
    assert " started" not in proc.stdout and "through Ray" not in proc.stdout  # Ray was not even started
    assert list(pd.read_csv(results / "final_table.csv")["config"]) == CONFIGS


def test_ray_runs_equal_the_sequential_ones_bit_for_bit(through_ray):
    root, results, first = through_ray
    assert first.returncode == 0, first.stderr[-3000:]
    proc = rerun(str(results), "--pick", "0", "1", "--seeds", "2", "--sequential", "--threads", "1",
                 "--out", str(root / "sequential"), cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "8 run(s) to train in this process, one at a time, 1 thread each" in proc.stdout
    ray_runs, seq_runs = records(results), records(root / "sequential")
    assert sorted(seq_runs) == sorted(ray_runs)
    for key, r in ray_runs.items():
        s = seq_runs[key]
        assert s["through"] == "in-process" and s["protocol"]["threads"] == 1
        assert (s["acc_class_il"], s["acc_task_il"]) == (r["acc_class_il"], r["acc_task_il"]), key
        assert s["metrics"] == r["metrics"], key


def test_a_diverging_run_fails_alone_and_a_rerun_redoes_only_it(tmp_path):
    results = search_folder(tmp_path / "search", [GOOD[0], DIVERGES], epochs=1)
    args = (str(results), "--pick", "0", "1", "--seeds", "2", "--no-baselines")
    proc = rerun(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    bad = f"icarl #1 ({trial_id(1)})"
    assert errors[0].startswith("error: 2 of 4 runs failed; the finished runs are kept and the same command "
                                "reruns only the failed ones: "), errors[0]
    for seed in (0, 1):
        assert f"{bad} seed {seed}: diverged: loss became nan in task " in errors[0], errors[0]
        assert f"] run {bad} seed {seed} FAILED (diverged: loss became nan" in proc.stdout
    assert "#0" not in errors[0]
    runs = records(results)
    good = {k: r for k, r in runs.items() if k.startswith(f"icarl-{trial_id(0)}/")}
    assert len(good) == 2 and all(r["status"] == "completed" for r in good.values())
    assert all(runs[f"icarl-{trial_id(1)}/seed{s}"]["status"] == "diverged" for s in (0, 1))  # partial results
    assert not (results / "final_table.csv").exists() and not (results / "final_table.md").exists()
    kept = {k: (results / "rerun" / k / "result.json").read_bytes() for k in good}
    # The same command again: the finished runs are kept, only the failed ones train again.
    again = rerun(*args, cwd=tmp_path)
    assert again.returncode == 2, again.stderr[-3000:]
    assert again.stderr.count(": kept the finished run in ") == 2
    assert "2 run(s) to train through Ray" in again.stdout
    started = [line for line in again.stdout.splitlines() if line.endswith(" started")]
    assert len(started) == 2 and all(f"] run {bad} seed " in line for line in started), again.stdout
    assert {k: (results / "rerun" / k / "result.json").read_bytes() for k in good} == kept

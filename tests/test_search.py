"""search/run.py end to end on a tiny synthetic stream (real Ray Tune + Optuna).

Each search starts Ray in a subprocess, as a user would; they cost ~15-40 s each
on two cores, so there are few and small ones: the two-objective Pareto search,
the ASHA scalar mode, and a resume after an interrupted driver.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from search.spaces import Dist, resolve_space
from core.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(ROOT / "search" / "run.py")]
# The did-not-learn rule is off (--min-plasticity-margin 0): these tiny searches test
# scheduling, files and faults, not whether 1-epoch trials on synthetic data learn.
TINY = ["--dataset", "synthetic", "--epochs", "1", "--cpus-per-trial", "1", "--min-plasticity-margin", "0", "--confirm-seeds", "0"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_AUTH_MODE"] = "disabled"
    env.pop("CL_DATA_DIR", None)
    return env


def search(tmp_path: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*RUN, *TINY, "--results-root", str(tmp_path), *args], capture_output=True, text=True,
                          timeout=timeout, env=_env(), cwd=tmp_path)


# -- spaces: no Ray needed -----------------------------------------------------

def test_ranges_narrow_and_sets_fix_knobs():
    space, fixed = resolve_space("icarl", ["lr=0.05:1", "selection=random,herding"], {"memory": "200"})
    assert space["lr"] == Dist("float", 0.05, 1.0, True)  # keeps the log scale
    assert space["selection"].choices == ("random", "herding")
    # iCaRL's own default loop knob (Strategy.loop_defaults) joins what --set fixed
    assert "memory" not in space and fixed == {"memory": 200, "augment": "none"}


@pytest.mark.parametrize("ranges, fixed, message", [
    (["lrr=0.1:1"], {}, "did you mean 'lr'"),
    (["lr=1:0.1"], {}, "empty or inverted"),
    (["lr=0.5:0.5"], {}, "empty or inverted"),
    (["lr=0:1"], {}, "below its minimum"),
    (["memory=10:abc"], {}, "not a valid int"),
    (["selection=random"], {}, "at least two choices"),
    (["lr=0.1:1"], {"lr": "0.5"}, "both fixed"),
    ([], {"memroy": "5"}, "did you mean 'memory'"),
])
def test_bad_search_ranges_are_config_errors(ranges, fixed, message):
    with pytest.raises(ConfigError, match=message):
        resolve_space("icarl", ranges, fixed)


@pytest.mark.parametrize("args, message", [
    (["--method", "icarll"], "unknown method 'icarll'"),
    (["--method", "icarl", "--range", "lr=2:1"], "empty or inverted"),
    (["--method", "icarl", "--trials", "0"], "--trials must be at least 1"),
    (["--method", "icarl", "--objectives", "accuracy"], "unknown objective"),
    (["--method", "icarl", "--val-fraction", "0"], "needs a validation split"),
    (["--method", "icarl", "--tasks", "50"], "more than the 6 selected classes"),
    (["--method", "icarl", "--range", "memory=5000:9000"], "not below the stream's"),
    (["--method", "icarl", "--resume", "--name", "nothing-here"], "nothing to resume"),
])
@pytest.mark.slow  # subprocess: search/run.py, one per case
def test_bad_command_lines_fail_in_one_line_before_ray_starts(tmp_path, args, message):
    proc = search(tmp_path, *args, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert not any((tmp_path / "nothing-here").glob("*"))


# -- real searches -----------------------------------------------------------------

def _trials(results_dir: Path) -> pd.DataFrame:
    return pd.read_csv(results_dir / "trials.csv")


@pytest.mark.slow  # Ray search in a subprocess
def test_two_objective_search_writes_results_and_report(tmp_path):
    proc = search(tmp_path, "--method", "replay", "--trials", "3", "--name", "pareto", "--set", "memory=30")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = tmp_path / "pareto"
    spec = json.loads((out / "search.json").read_text())
    assert spec["objectives"] == [["final_acc", "max"], ["forgetting", "min"]] and spec["fixed"] == {"memory": 30}
    df = _trials(out)
    assert len(df) == 3 and df["trial_id"].is_unique
    assert set(df["status"]) == {"completed"}
    for col in ("param.lr", "param.kd_weight", "param.memory", "final_acc", "avg_inc_acc", "forgetting", "bwt",
                "plasticity", "wall_time_s", "memory"):
        assert col in df.columns, col
    assert (df["param.memory"] == 30).all() and (df["memory"] == 30).all()
    # Every trial's result holds the full validation matrices for 3 tasks.
    for tid in df["trial_id"]:
        r = json.loads((out / "trials" / tid / "result.json").read_text())
        assert r["eval_split"] == "val" and len(r["acc_class_il"]) == 3 and r["status"] == "completed"
    assert (out / "report.html").stat().st_size > 0 and (out / "pareto.png").stat().st_size > 0
    assert "report:" in proc.stdout and "trial" in proc.stdout  # live progress lines


@pytest.mark.slow  # Ray search in a subprocess
def test_asha_scalar_search_never_puts_truncated_trials_on_a_front(tmp_path):
    proc = search(tmp_path, "--method", "finetune", "--trials", "6", "--name", "asha", "--asha", "final_acc",
                  "--max-concurrent", "2")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = tmp_path / "asha"
    df = _trials(out)
    assert len(df) == 6
    assert set(df["status"]) <= {"completed", "truncated"}
    spec = json.loads((out / "search.json").read_text())
    assert spec["asha"] is True and spec["objectives"] == [["final_acc", "max"]]
    from analysis.pareto import pareto_table
    table = pareto_table(df, {"final_acc": "max"}, eligible=df["status"] == "completed")
    assert not table.loc[table["on_front"], "status"].ne("completed").any()
    assert (df.loc[df["status"] == "truncated", "tasks_done"] < 3).all()


@pytest.mark.slow  # Ray search in a subprocess
def test_mo_asha_search_stops_dominated_trials_and_keeps_them_off_the_front(tmp_path):
    # replay: finetune forgets everything here, and a front at forgetting 1 has no hypervolume to check.
    proc = search(tmp_path, "--method", "replay", "--trials", "6", "--name", "moasha", "--mo-asha",
                  "--max-concurrent", "2")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = tmp_path / "moasha"
    df = _trials(out)
    assert len(df) == 6 and df["trial_id"].is_unique
    spec = json.loads((out / "search.json").read_text())
    assert spec["mo_asha"] is True and spec["grace_tasks"] == 1 and spec["reduction_factor"] == 2
    assert spec["objectives"] == [["final_acc", "max"], ["forgetting", "min"]]
    # Rungs at 1 and 2 of 3 tasks: with 6 trials some are stopped there, and
    # a stopped trial is recorded with the tasks it did, never on the front.
    truncated = df[df["status"] == "truncated"]
    assert len(truncated) >= 1 and set(truncated["tasks_done"]) <= {1, 2}
    assert set(df["status"]) <= {"completed", "truncated"} and (df["status"] == "completed").any()
    from analysis.pareto import pareto_table
    table = pareto_table(df, {"final_acc": "max", "forgetting": "min"}, eligible=df["status"] == "completed")
    assert table["on_front"].any() and not table.loc[table["on_front"], "status"].ne("completed").any()
    assert "stopped early after" in proc.stdout
    assert "multi-objective ASHA" in (out / "report.md").read_text()
    # The search-throughput bench reads the same folder: its counts and the
    # hypervolume of the completed trials (reference: accuracy 0, forgetting 1).
    from analysis.pareto import hypervolume
    bench = subprocess.run([sys.executable, str(ROOT / "bench" / "search_throughput.py"), str(out), "--slots", "2"],
                           capture_output=True, text=True, timeout=120, env=_env())
    assert bench.returncode == 0, bench.stderr
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1].strip(" |") for line in bench.stdout.splitlines()[2:]}
    n_trunc, n_done = len(truncated), int((df["status"] == "completed").sum())
    assert rows["trials ended"] == f"6 ({n_done} completed, {n_trunc} stopped early)"
    assert rows["early stopping"] == "MO-ASHA grace 1 factor 2"
    done = df[df["status"] == "completed"]
    hv = hypervolume(done[["final_acc", "forgetting"]].to_numpy(float), ["max", "min"], [0.0, 1.0])
    assert rows["front hypervolume"] == f"{hv:.4f}" and hv > 0


@pytest.mark.slow  # Ray searches in subprocesses
def test_interrupted_search_resumes_without_losing_or_duplicating_trials(tmp_path):
    args = [*RUN, *TINY, "--results-root", str(tmp_path), "--method", "finetune", "--trials", "5",
            "--name", "resume", "--no-report", "--max-concurrent", "1", "--epochs", "3"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
                            cwd=tmp_path, start_new_session=True)
    trials_dir = tmp_path / "resume" / "trials"

    def completed() -> list[str]:
        done = []
        for f in trials_dir.glob("*/result.json"):
            try:
                if json.loads(f.read_text())["status"] == "completed":
                    done.append(f.parent.name)
            except (OSError, ValueError, KeyError):
                pass
        return sorted(done)

    deadline = time.time() + 240
    while len(completed()) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    first = completed()
    assert len(first) >= 2, "the search did not get going"
    before = {t: (trials_dir / t / "result.json").read_text() for t in first}
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
    proc.communicate(timeout=120)
    assert (tmp_path / "resume" / "tune").exists()

    again = subprocess.run(args, capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "resuming" in again.stdout
    df = _trials(tmp_path / "resume")
    assert len(df) == 5 and df["trial_id"].is_unique  # the requested number, no duplicates
    assert set(df["status"]) == {"completed"}
    for t, text in before.items():  # finished trials kept, not rerun
        assert (trials_dir / t / "result.json").read_text() == text

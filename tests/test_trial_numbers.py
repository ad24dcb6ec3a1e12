"""One trial number everywhere, and the newcomer's command-line comforts.

A trial's number is its Optuna trial number (start order). The slow test runs
a real search and checks that the live log, result.json, trials.csv, the
report, Optuna's own study, Tune's folder names and ``rerun.py --pick`` all give
each trial the same number. The others cover ``--dry-run`` (prints the plan,
writes nothing), a bare ``search/run.py`` (usage, no search), the checkpoint
clean-up after a finished search, ``rerun.py --pick ... RESULTS_DIR`` in either
order, and the resume hint after Ctrl-C.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.fixtures_results import write_search_fixture

ROOT = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(ROOT / "search" / "run.py")]
TINY = ["--dataset", "synthetic", "--epochs", "1", "--cpus-per-trial", "1", "--min-plasticity-margin", "0", "--confirm-seeds", "0"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_AUTH_MODE"] = "disabled"
    env.pop("CL_DATA_DIR", None)
    return env


def _run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=cwd)


@pytest.mark.slow  # a Ray search in a subprocess
def test_one_trial_number_in_log_records_csv_report_optuna_and_pick(tmp_path):
    proc = _run([*RUN, *TINY, "--results-root", str(tmp_path), "--method", "replay", "--trials", "4",
                 "--max-concurrent", "2", "--name", "numbers"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = tmp_path / "numbers"

    # The live log: "trial 2 (ab12cd34) started: ..." once per trial.
    started = dict(re.findall(r"trial (\d+) \((\w+)\) started", proc.stdout))
    logged = {tid: int(n) for n, tid in started.items()}
    assert sorted(logged.values()) == [0, 1, 2, 3]

    df = pd.read_csv(out / "trials.csv", dtype={"trial_id": str})
    assert list(df["trial_number"]) == [0, 1, 2, 3]  # rows in start order
    assert dict(zip(df["trial_id"], df["trial_number"])) == logged
    assert df["started_at"].notna().all()
    for tid, number in logged.items():
        record = json.loads((out / "trials" / tid / "result.json").read_text())
        assert record["trial_number"] == number
        assert "trial_number" not in record["params"]  # a label, not a knob
        assert list((out / "tune").glob(f"trial_{number:04d}_{tid}")), "Tune's folder is named by number and id"

    # Optuna's own numbering, from the searcher state Tune saved.
    state = pickle.loads(sorted((out / "tune").glob("searcher-state-*.pkl"))[-1].read_bytes())
    study = state["_ot_study"]
    for tid, number in logged.items():
        assert state["_ot_trials"][tid].number == number
        record = json.loads((out / "trials" / tid / "result.json").read_text())
        assert study.trials[number].params == {k: record["params"][k] for k in study.trials[number].params}

    # The report's front table: "| <number> | <trial id> | ...".
    md = (out / "report.md").read_text()
    for n, tid in re.findall(r"^\| (\d+) \| (\w+) \|", md, flags=re.M):
        assert logged[tid] == int(n)

    # rerun.py --pick takes the number (also written "#N") and finds the same trial.
    from analysis.results import load_search
    from search.rerun import pick_trials
    results = load_search(out)
    for tid, number in logged.items():
        for pick in (str(number), f"#{number}", tid):
            if results.trials.set_index("trial_id").loc[tid, "status"] == "completed":
                assert list(pick_trials(results, [pick])["trial_id"]) == [tid]

    # Live progress: a line after each task but the last, with images/s and the search's ETA.
    task_lines = re.findall(r"trial (\d+) \((\w+)\) task (\d)/3 done: final_acc [\d.]+% forgetting -?[\d.]+% "
                            r"\(([\d,]+ img/s, )?\d+ s\) \| search (\d+)% done", proc.stdout)
    assert sorted((int(n), int(t)) for n, _, t, _, _ in task_lines) == [(n, t) for n in range(4) for t in (1, 2)]
    assert "ETA ~" in proc.stdout

    # Finished: the per-task checkpoints are gone, Tune's state is not.
    assert "removed 4 trial checkpoint(s)" in proc.stdout
    assert not list((out / "tune").glob("*/checkpoint_*"))
    assert list((out / "tune").glob("experiment_state-*.json"))


@pytest.mark.slow  # a Ray search in a subprocess
def test_keep_checkpoints_keeps_them_and_epoch_lines_reach_the_log(tmp_path):
    env = {**_env(), "CLSEARCH_EPOCH_PROGRESS_S": "0"}  # every epoch line, not one a minute
    proc = subprocess.run([*RUN, *TINY, "--results-root", str(tmp_path), "--method", "finetune", "--trials", "2",
                           "--name", "kept", "--keep-checkpoints", "--no-report", "--epochs", "2"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert len(list((tmp_path / "kept" / "tune").glob("*/checkpoint_*"))) == 2
    assert "removed" not in proc.stdout
    # The trials' epoch lines, forwarded by Ray from the workers' output (2 trials x
    # 3 tasks x 2 epochs were printed; Ray's log monitor polls the workers' files,
    # so the last lines before the driver exits may not arrive: at least some do).
    epochs = re.findall(r"trial (\d) \(\w+\): \[finetune\] task (\d)/3 train epoch (\d)/2 loss [\d.]+ \(\d+ img/s\)",
                        proc.stdout + proc.stderr)
    assert len(set(epochs)) >= 2 and set(epochs) <= {(n, t, e) for n in "01" for t in "123" for e in "12"}
    assert "\x1b[" not in proc.stdout  # no colour codes in Ray's prefix


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    from search.run import main
    assert main(["--dataset", "synthetic", "--method", "icarl", "--trials", "6", "--results-root",
                 str(tmp_path / "results"), "--name", "plan", "--set", "weight_decay=0.0001", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "dry run: nothing is written" in text
    # The stream, task by task, with its split sizes.
    assert len(re.findall(r"^  task \d+: 2 classes .*train \d+, val \d+, test \d+ images$", text, flags=re.M)) == 3
    # The searched space after clipping: memory's default high (2000) is above the
    # synthetic stream's training images, so it is clipped and the line says so.
    memory = next(line for line in text.splitlines() if line.strip().startswith("memory"))
    assert "clipped from int in [40, 2000]" in memory
    high = int(re.search(r"int in \[40, (\d+)\]", memory).group(1))
    assert high < 2000
    assert "fixed: weight_decay=0.0001" in text
    assert re.search(r"parallelism: \d+ trial\(s\) at once", text)
    assert re.search(r"estimate: [\d.]+ ms per training image .* per trial", text)
    assert "disk: about" in text
    assert "then the front confirmation (--confirm-seeds 2): each front candidate rerun with 2 more seed(s)" in text
    assert not (tmp_path / "results").exists()  # nothing written, not even the folder


def test_dry_run_counts_the_images_a_cheaper_fidelity_trains(tmp_path, capsys):
    from search.run import main

    def trained(*extra: str) -> int:
        assert main(["--dataset", "synthetic", "--method", "finetune", "--trials", "2", "--results-root",
                     str(tmp_path / "results"), *extra, "--dry-run"]) == 0
        return int(re.search(r"a trial trains ~([\d,]+) images", capsys.readouterr().out).group(1).replace(",", ""))

    full = trained()
    half = trained("--search-protocol", "train_fraction", "--set", "train_fraction=0.5")
    assert 0.45 * full <= half <= 0.6 * full  # half of each class, rounded up


def test_no_arguments_prints_usage_and_starts_nothing(tmp_path, capsys, monkeypatch):
    from search.run import main
    monkeypatch.chdir(tmp_path)
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: search/run.py") and "--dry-run" in out
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("order", ["pick-first", "folder-first"])
def test_rerun_takes_the_folder_before_or_after_pick(tmp_path, order, capsys):
    folder = write_search_fixture(tmp_path / "icarl-search")
    args = ["--pick", "front", str(folder)] if order == "pick-first" else [str(folder), "--pick", "front"]
    # --epochs next to a search folder is refused in one line: proof the folder
    # was taken as RESULTS_DIR (else: "give RESULTS_DIR ... or --method"), before any training.
    from core.cli import cli_main
    from search.rerun import main
    assert cli_main(main, [*args, "--epochs", "3"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --epochs cannot be changed when rerunning the search in {folder}: "
                                   "its search.json fixes the protocol (drop --epochs)")


def test_folder_after_pick_keeps_the_picks():
    from search.rerun import folder_after_pick
    args = argparse.Namespace(results_dir=None, pick=["3", str(ROOT / "tests"), "5"])
    folder_after_pick(args)
    assert args.results_dir == str(ROOT / "tests") and args.pick == ["3", "5"]
    args = argparse.Namespace(results_dir=None, pick=[str(ROOT / "tests")])
    folder_after_pick(args)
    assert args.pick == ["front"]


@pytest.mark.slow  # a Ray search in a subprocess, interrupted
def test_ctrl_c_says_how_to_resume(tmp_path):
    cmd = [*RUN, *TINY, "--results-root", str(tmp_path), "--method", "finetune", "--trials", "40",
           "--max-concurrent", "1", "--epochs", "3", "--no-report"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            cwd=tmp_path, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if len(list(tmp_path.glob("*/trials/*/result.json"))) >= 2:
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout[-1500:] + stderr[-1500:]
    hint = [line for line in stderr.splitlines() if line.startswith("search interrupted:")]
    assert len(hint) == 1, stderr
    name = next(tmp_path.iterdir()).name  # the default name holds the start time: the hint must give it
    assert hint[0].endswith(f"--name {name} --resume")
    assert "search finished" not in stdout
    # The hint's command resumes the search to the end, numbers continuing.
    resume = hint[0].split("to continue: ", 1)[1].split()[2:]  # drop "python search/run.py"
    again = _run([*RUN, *resume], tmp_path)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    df = pd.read_csv(tmp_path / name / "trials.csv")
    assert sorted(df["trial_number"]) == list(range(40)) and df["trial_id"].is_unique

"""The search's files for other tools: the Optuna study on disk, Ray Tune's
standard logs, and the Weights & Biases / MLflow options.

Fast tier: the searcher with a journal study on its own (no Ray started): every
trial in the file with its state, values, constraint and Tune id; a restore
after a snapshot sees every trial once, settles the ones a killed driver left
running and re-attaches to a moved folder; a cut-short or unreadable file; a
new searcher after lost Tune state goes on in the same study. Slow tier
(subprocesses, Ray): tiny searches whose study ``optuna.load_study`` reads
with trials.csv's numbers, whose ``tune/`` folder ``ExperimentAnalysis``
reads, before and after a resume; and ``--wandb``/``--mlflow``.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from core.feasibility import CONSTRAINT_KEY, REPORT_KEY
from core.result import OPTUNA_STUDY_FILE, TRIAL_NUMBER_KEY

ROOT = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(ROOT / "search" / "run.py")]
# No front confirmation: these searches check the study and Tune's logs, and a
# Ctrl-C meant for the search's trials must not land in the confirmation phase.
TINY = ["--dataset", "synthetic", "--epochs", "1", "--cpus-per-trial", "1", "--min-plasticity-margin", "0",
        "--confirm-seeds", "0"]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_AUTH_MODE"] = "disabled"
    env.pop("CL_DATA_DIR", None)
    env.update(extra)
    return env


def _load_study(path: Path, name: str):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(path))))


# -- the searcher and its journal, without Ray ---------------------------------------------------

def _searcher(tmp_path: Path, margin: float = 0.0, **kwargs):
    import optuna

    from search.searcher import FullRunOptunaSearch, make_sampler

    return FullRunOptunaSearch(
        space={"lr": optuna.distributions.FloatDistribution(0.01, 1.0, log=True)},
        metric=["final_acc", "forgetting"], mode=["max", "min"], sampler=make_sampler(0, 8),
        num_tasks=3, class_counts=[2, 2, 2], min_plasticity_margin=margin,
        study_file=tmp_path / OPTUNA_STUDY_FILE, study_name="s", results_dir=tmp_path, **kwargs)


def _result(acc: float, forgetting: float, tasks: int = 3, plasticity: float = 0.9) -> dict:
    return {"final_acc": acc, "forgetting": forgetting, "tasks_done": tasks, REPORT_KEY: plasticity}


def _record(folder: Path, trial_id: str, number: int, lr: float, acc: float, forgetting: float) -> None:
    """A completed trial's result.json, as the trainable writes it (the fields the searcher reads)."""
    row = [acc] * 3
    (folder / "trials" / trial_id).mkdir(parents=True, exist_ok=True)
    (folder / "trials" / trial_id / "result.json").write_text(json.dumps({
        "trial_id": trial_id, TRIAL_NUMBER_KEY: number, "status": "completed", "params": {"lr": lr},
        "task_incremental_only": False, "acc_task_il": [row, row, row], "memory_size": 0, "num_params": 1,
        "train_time_s": 1.0,
        "metrics": {"class_il": {"final_acc": acc, "forgetting": forgetting, "avg_inc_acc": acc, "bwt": 0.0,
                                 "plasticity": acc, "final_acc_pooled": acc},
                    "task_il": {"plasticity": 0.9}}}))


def test_every_trial_is_in_the_study_file_with_state_values_constraint_and_tune_id(tmp_path):
    from optuna.trial import TrialState

    searcher = _searcher(tmp_path, margin=0.1)
    configs = {tid: searcher.suggest(tid) for tid in ("aa", "bb", "cc", "dd")}
    assert [c[TRIAL_NUMBER_KEY] for c in configs.values()] == [0, 1, 2, 3]
    searcher.on_trial_complete("aa", _result(0.8, 0.1))
    searcher.on_trial_complete("bb", _result(0.5, 0.0, plasticity=0.5))  # did not learn: chance 50 %
    searcher.on_trial_complete("cc", _result(0.7, 0.2, tasks=1))  # stopped early
    searcher.on_trial_complete("dd", error=True)

    study = _load_study(tmp_path / OPTUNA_STUDY_FILE, "s")  # another reader, from the file alone
    trials = study.trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert [t.user_attrs["trial_id"] for t in trials] == ["aa", "bb", "cc", "dd"]
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED,
                                         TrialState.FAIL]
    assert trials[0].values == [0.8, 0.1] and trials[1].values == [0.5, 0.0]
    assert trials[0].params["lr"] == configs["aa"]["lr"]
    assert trials[0].constraints[CONSTRAINT_KEY] <= 0 < trials[1].constraints[CONSTRAINT_KEY]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]


def test_a_restored_searcher_sees_each_trial_once_and_settles_the_ones_left_running(tmp_path):
    from optuna.trial import TrialState

    searcher = _searcher(tmp_path)
    at_start = pickle.dumps(searcher)  # Tuner pickles the searcher when it is made (tuner.pkl)
    for tid in ("aa", "bb", "cc"):
        searcher.suggest(tid)
    searcher.on_trial_complete("aa", _result(0.8, 0.1))
    searcher.save(str(tmp_path / "searcher-state.pkl"))  # Tune's last saved state: bb and cc running
    searcher.on_trial_complete("bb", _result(0.6, 0.2))  # told after the snapshot
    searcher.suggest("dd")  # asked after it: Tune will never hear of dd
    searcher.suggest("ee")
    _record(tmp_path, "ee", 4, searcher._ot_trials["ee"].params["lr"], 0.7, 0.3)  # ee finished on disk
    del searcher  # the driver is killed

    restored = pickle.loads(at_start)
    restored.restore(str(tmp_path / "searcher-state.pkl"))
    states = {t.number: t.state for t in restored._ot_study.trials}
    assert states == {0: TrialState.COMPLETE, 1: TrialState.COMPLETE, 2: TrialState.RUNNING,
                      3: TrialState.FAIL, 4: TrialState.COMPLETE}
    assert restored._ot_study.trials[3].user_attrs["lost"]
    assert restored._ot_study.trials[4].values == [0.7, 0.3]
    # Tune goes on: bb ends again (told already: ignored), cc ends, a new trial comes next.
    restored.on_trial_complete("bb", _result(0.6, 0.2))
    restored.on_trial_complete("cc", _result(0.5, 0.4))
    assert restored.suggest("ff")[TRIAL_NUMBER_KEY] == 5
    study = _load_study(tmp_path / OPTUNA_STUDY_FILE, "s")
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4, 5]
    assert [t.user_attrs.get("trial_id") for t in study.trials] == ["aa", "bb", "cc", "dd", "ee", "ff"]
    assert study.trials[1].values == [0.6, 0.2] and study.trials[2].values == [0.5, 0.4]


def test_a_trial_tune_saved_after_the_searchers_snapshot_is_told_when_it_ends(tmp_path):
    """Tune saves its experiment and the searcher at different moments: a trial
    asked after the searcher's snapshot that Tune's saved state lists is resumed
    by Tune, so the restored searcher adopts it (not "lost") and tells it."""
    import json

    from optuna.trial import TrialState

    searcher = _searcher(tmp_path)
    at_start = pickle.dumps(searcher)
    searcher.suggest("aa")
    searcher.save(str(tmp_path / "searcher-state.pkl"))  # the searcher's snapshot: aa running
    searcher.suggest("bb")  # asked after it; Tune's own snapshot lists bb
    (tmp_path / "tune").mkdir()
    entries = [[json.dumps({"trial_id": tid}), "{}"] for tid in ("aa", "bb")]
    (tmp_path / "tune" / "experiment_state-x.json").write_text(json.dumps({"trial_data": entries}))
    del searcher  # Ctrl-C

    restored = pickle.loads(at_start)
    restored.restore(str(tmp_path / "searcher-state.pkl"))
    assert {t.number: t.state for t in restored._ot_study.trials} == {0: TrialState.RUNNING,
                                                                      1: TrialState.RUNNING}
    restored.on_trial_complete("aa", _result(0.8, 0.1))
    restored.on_trial_complete("bb", _result(0.6, 0.2))  # Tune finished it: told, not FAIL
    study = _load_study(tmp_path / OPTUNA_STUDY_FILE, "s")
    assert [(t.state, t.values) for t in study.trials] == [(TrialState.COMPLETE, [0.8, 0.1]),
                                                           (TrialState.COMPLETE, [0.6, 0.2])]


def test_a_restored_searcher_reattaches_to_the_folder_where_the_search_is_now(tmp_path):
    from search.searcher import set_restore_location

    first = tmp_path / "first"
    first.mkdir()
    searcher = _searcher(first)
    at_start = pickle.dumps(searcher)
    searcher.suggest("aa")
    searcher.save(str(first / "searcher-state.pkl"))
    moved = tmp_path / "moved"
    shutil.copytree(first, moved)  # a copy: the old file must not be written any more
    before = (first / OPTUNA_STUDY_FILE).read_bytes()
    restored = pickle.loads(at_start)
    set_restore_location(moved, moved / OPTUNA_STUDY_FILE)
    try:
        restored.restore(str(moved / "searcher-state.pkl"))
    finally:
        set_restore_location(None)
    restored.on_trial_complete("aa", _result(0.8, 0.1))
    assert (first / OPTUNA_STUDY_FILE).read_bytes() == before
    assert _load_study(moved / OPTUNA_STUDY_FILE, "s").trials[0].values == [0.8, 0.1]
    assert restored.results_dir == str(moved)


def test_a_study_file_cut_short_loses_only_its_last_write(tmp_path):
    searcher = _searcher(tmp_path)
    searcher.suggest("aa")
    searcher.on_trial_complete("aa", _result(0.8, 0.1))
    path = tmp_path / OPTUNA_STUDY_FILE
    with open(path, "ab") as f:
        f.write(b'{"op_code": 5, "worker_id": "x", "trial_')  # a full disk in the middle of an append
    from search.searcher import journal_storage
    journal_storage(path)  # cuts the torn line off
    assert path.read_bytes().endswith(b"\n")
    again = _searcher(tmp_path)  # the study is read and reused, then written to
    assert again.suggest("bb")[TRIAL_NUMBER_KEY] == 1
    assert [t.user_attrs["trial_id"] for t in _load_study(path, "s").trials] == ["aa", "bb"]


def test_an_unreadable_study_file_is_set_aside_and_rebuilt_from_the_records(tmp_path, capsys):
    from optuna.trial import TrialState

    from search.searcher import Finished

    path = tmp_path / OPTUNA_STUDY_FILE
    path.write_text('{"op_code": 0, "worker_id": "x", "study_name": "s", "directions": [2, 1]}\nnot json\n{}\n')
    kept = [Finished(0, {"lr": 0.1}, [0.8, 0.1], "aa"), Finished(2, {"lr": 0.2}, [0.7, 0.2], "cc")]
    searcher = _searcher(tmp_path, finished=kept)
    assert "cannot be read" in capsys.readouterr().out
    assert (tmp_path / (OPTUNA_STUDY_FILE + ".unreadable")).exists()
    trials = _load_study(path, "s").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[2].params == {"lr": 0.2} and trials[2].user_attrs["trial_id"] == "cc"
    assert searcher.suggest("dd")[TRIAL_NUMBER_KEY] == 3


def test_after_lost_tune_state_a_new_searcher_goes_on_in_the_same_study(tmp_path):
    """The lost-Tune-state path of run.py: a new searcher, told the kept trials,
    on the study file the first one wrote. Nothing kept is added twice, the
    trial an earlier driver left running is settled, numbers continue."""
    from optuna.trial import TrialState

    from search.run import warm_start

    first = _searcher(tmp_path, margin=0.1)
    for tid in ("aa", "bb", "cc"):
        first.suggest(tid)
    first.on_trial_complete("aa", _result(0.8, 0.1))
    first.on_trial_complete("bb", _result(0.5, 0.0, plasticity=0.5))
    lrs = {tid: first._ot_trials[tid].params["lr"] for tid in ("aa", "bb", "cc")}
    del first
    # Their records: aa and bb completed (bb did not learn); cc never finished.
    _record(tmp_path, "aa", 0, lrs["aa"], 0.8, 0.1)
    _record(tmp_path, "bb", 1, lrs["bb"], 0.5, 0.0)
    records = {t: json.loads((tmp_path / "trials" / t / "result.json").read_text()) for t in ("aa", "bb")}
    second = _searcher(tmp_path, margin=0.1, **warm_start(records, {"lr": None}, ["final_acc", "forgetting"]))
    trials = second._ot_study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    assert trials[1].constraints[CONSTRAINT_KEY] > 0  # the constraint stays, told once
    assert second.suggest("dd")[TRIAL_NUMBER_KEY] == 3
    assert [t.user_attrs.get("trial_id") for t in _load_study(tmp_path / OPTUNA_STUDY_FILE, "s").trials] == \
        ["aa", "bb", "cc", "dd"]


def test_an_in_memory_searcher_still_numbers_kept_trials_with_placeholders(tmp_path):
    """Without a study file (a search from before it, lost Tune state or resumed): as before."""
    import optuna
    from optuna.trial import TrialState

    from search.searcher import FullRunOptunaSearch, make_sampler, set_restore_location

    searcher = FullRunOptunaSearch(
        space={"lr": optuna.distributions.FloatDistribution(0.01, 1.0, log=True)}, metric="final_acc",
        mode="max", sampler=make_sampler(0, 8), num_tasks=3,
        finished=[(0, {"lr": 0.1}, [0.8]), (2, {"lr": 0.2}, [0.7]), (None, {"lr": 0.3}, [0.6])])
    assert [t.state for t in searcher._ot_study.trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                                           TrialState.COMPLETE, TrialState.COMPLETE]
    assert searcher.suggest("x")[TRIAL_NUMBER_KEY] == 4
    assert not math.isnan(searcher._ot_study.trials[3].values[0])
    # --resume of such a search: run.py names the folder but no study file; the pickle is the study.
    at_start = pickle.dumps(searcher)
    searcher.save(str(tmp_path / "searcher-state.pkl"))
    set_restore_location(tmp_path, None)
    try:
        restored = pickle.loads(at_start)
        restored.restore(str(tmp_path / "searcher-state.pkl"))
    finally:
        set_restore_location(None)
    assert len(restored._ot_study.trials) == 5 and not list(tmp_path.glob("*.log"))


# -- --wandb / --mlflow without their package: one line, before anything starts -----------------

def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.parametrize("option, package", [(["--wandb", "clsearch"], "wandb"), (["--mlflow"], "mlflow"),
                                             (["--mlflow", "file:///tmp/mlruns"], "mlflow")])
def test_a_logger_option_without_its_package_fails_in_one_line_before_ray(tmp_path, capsys, monkeypatch, option,
                                                                          package):
    # CI installs the packages (requirements-integrations.txt) for the offline tests
    # below: the missing package is simulated where it is installed.
    import importlib.util
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == package else real_find_spec(name, *a, **k))
    from core.cli import cli_main
    from search.run import main

    code = cli_main(main, [*TINY, "--method", "finetune", "--trials", "2", "--results-root", str(tmp_path),
                           "--name", "nolog", *option])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"error: --{package} needs the {package} package: pip install {package}"]
    assert not list(tmp_path.iterdir())  # no results folder: nothing started


# -- tiny searches: the study and Tune's logs ------------------------------------------------------

def _search(tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 300):
    return subprocess.run([*RUN, "--dataset", "synthetic", "--epochs", "1", "--cpus-per-trial", "1",
                           "--results-root", str(tmp_path), *args], capture_output=True, text=True,
                          timeout=timeout, env=env or _env(), cwd=tmp_path)


def _check_study_matches_trials_csv(out: Path) -> tuple[pd.DataFrame, list]:
    """Every trials.csv row is the study's trial of the same number (Tune id, params,
    values), once; any other trial of the study is a FAIL that never reported."""
    from optuna.trial import TrialState

    spec = json.loads((out / "search.json").read_text())
    assert spec["optuna_study"] == {"storage": OPTUNA_STUDY_FILE, "study_name": out.name}
    study = _load_study(out / spec["optuna_study"]["storage"], spec["optuna_study"]["study_name"])
    trials = study.trials
    assert [t.number for t in trials] == list(range(len(trials)))
    df = pd.read_csv(out / "trials.csv", dtype={"trial_id": str, "error": str})
    # Confirmation trials (other seeds of front candidates, --confirm-seeds) are no
    # samples of the sampler: never in the study (search/searcher.py).
    if "confirms" in df.columns:
        df = df[df["confirms"].isna()]
    objectives = [name for name, _ in spec["objectives"]]
    for _, row in df.iterrows():
        t = trials[int(row["trial_number"])]
        assert t.user_attrs["trial_id"] == row["trial_id"]
        assert t.params == {k: row[f"param.{k}"] for k in t.params} and t.params
        if row["status"] in ("completed", "infeasible"):
            assert t.state == TrialState.COMPLETE
            assert t.values == pytest.approx([row[m] for m in objectives])
    ids = [t.user_attrs.get("trial_id") for t in trials if t.user_attrs.get("trial_id")]
    assert len(ids) == len(set(ids)), "a trial is in the study twice"
    others = [t for t in trials if t.number not in set(df["trial_number"])]
    assert all(t.state == TrialState.FAIL for t in others), others
    return df, trials


def _check_tune_logs(out: Path, df: pd.DataFrame) -> None:
    """Tune's own analysis reads the folder: one row per trial, the objectives in it;
    the per-task CSV/JSON logs and TensorBoard files are there, the checkpoints not."""
    from ray.tune import ExperimentAnalysis

    frame = ExperimentAnalysis(str(out / "tune")).dataframe()
    assert len(frame) == len(df) and frame["trial_id"].is_unique
    assert set(frame["trial_id"]) == set(df["trial_id"])
    by_id = df.set_index("trial_id")
    for _, row in frame.iterrows():
        assert row["final_acc"] == pytest.approx(by_id.loc[row["trial_id"], "final_acc"])
        assert row["forgetting"] == pytest.approx(by_id.loc[row["trial_id"], "forgetting"])
        assert row["config/trial_number"] == by_id.loc[row["trial_id"], "trial_number"]
    for tid in df["trial_id"]:
        folder = next((out / "tune").glob(f"trial_*_{tid}"))
        progress = pd.read_csv(folder / "progress.csv")
        assert list(progress["tasks_done"]) == [1, 2, 3]  # one row per task
        assert len((folder / "result.json").read_text().splitlines()) == 3
        if _installed("tensorboardX"):
            assert list(folder.glob("events.out.tfevents.*"))
        assert not list(folder.glob("checkpoint_*"))  # removed after the search, the logs kept


@pytest.mark.slow  # a Ray search in a subprocess
def test_a_search_writes_its_optuna_study_and_tunes_standard_logs(tmp_path):
    # The default margin: finetune at lr 5 collapses on this stream (tests/test_feasibility.py),
    # so the study holds a violated did-not-learn constraint too.
    proc = _search(tmp_path, "--method", "finetune", "--trials", "3", "--range", "lr=0.05,5", "--seed", "0",
                   "--name", "eco", "--no-report")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = tmp_path / "eco"
    df, trials = _check_study_matches_trials_csv(out)
    assert len(df) == len(trials) == 3
    for _, row in df.iterrows():
        constraint = trials[int(row["trial_number"])].constraints[CONSTRAINT_KEY]
        assert (constraint > 0) == (row["status"] == "infeasible"), (row["status"], constraint)
    assert {"completed", "infeasible"} <= set(df["status"])
    _check_tune_logs(out, df)
    sizes = {p.name: p.stat().st_size for p in next((out / "tune").glob("trial_0000_*")).iterdir()}
    print(f"study file {(out / OPTUNA_STUDY_FILE).stat().st_size} bytes for 3 trials; one trial's Tune logs: {sizes}")


def _completed(trials_dir: Path) -> list[str]:
    done = []
    for f in trials_dir.glob("*/result.json"):
        try:
            if json.loads(f.read_text())["status"] == "completed":
                done.append(f.parent.name)
        except (OSError, ValueError, KeyError):
            pass
    return sorted(done)


def _interrupt_after(args: list[str], trials_dir: Path, tmp_path: Path, n: int) -> None:
    """Start the search, Ctrl-C it once ``n`` trials have completed."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
                            cwd=tmp_path, start_new_session=True)
    deadline = time.time() + 240
    while len(_completed(trials_dir)) < n and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert len(_completed(trials_dir)) >= n, "the search did not get going"
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=120)


@pytest.mark.slow  # Ray searches in subprocesses
def test_a_resumed_search_holds_every_trial_once_in_study_and_logs(tmp_path):
    args = [*RUN, *TINY, "--results-root", str(tmp_path), "--method", "finetune", "--trials", "4",
            "--name", "resume", "--no-report", "--max-concurrent", "1", "--epochs", "3"]
    out = tmp_path / "resume"
    _interrupt_after(args, out / "trials", tmp_path, 2)
    again = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=300, env=_env(),
                           cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "resuming" in again.stdout
    df, trials = _check_study_matches_trials_csv(out)
    assert len(df) == 4 and set(df["status"]) == {"completed"}
    assert len(trials) == 4  # Ctrl-C saves Tune's state: no trial lost, none twice
    # Tune's logs after the resume: one row per trial in its analysis, and the
    # trial Ctrl-C stopped goes on in the same files (it resumed from a checkpoint).
    from ray.tune import ExperimentAnalysis
    frame = ExperimentAnalysis(str(out / "tune")).dataframe()
    assert len(frame) == 4 and set(frame["trial_id"]) == set(df["trial_id"])
    assert frame["final_acc"].notna().all() and frame["forgetting"].notna().all()
    for tid in df["trial_id"]:
        folder = next((out / "tune").glob(f"trial_*_{tid}"))
        assert pd.read_csv(folder / "progress.csv")["tasks_done"].iloc[-1] == 3
    print(f"resumed: study {[(t.number, t.state.name) for t in trials]}; Tune rows "
          f"{sorted(len(pd.read_csv(f)) for f in (out / 'tune').glob('trial_*/progress.csv'))}")


@pytest.mark.slow  # Ray searches in subprocesses
def test_after_lost_tune_state_the_search_goes_on_in_the_same_study(tmp_path):
    """Tune's newest experiment state cut short (as by a full disk): the resume runs
    the rest as a new Tune experiment; its searcher reuses the study file, so the
    kept trials are in it once, and new trials take new numbers."""
    args = [*RUN, *TINY, "--results-root", str(tmp_path), "--method", "finetune", "--trials", "4",
            "--name", "lost", "--no-report", "--max-concurrent", "1", "--epochs", "3"]
    out = tmp_path / "lost"
    _interrupt_after(args, out / "trials", tmp_path, 2)
    kept = _completed(out / "trials")
    state = sorted((out / "tune").glob("experiment_state-*.json"), key=lambda p: p.name)[-1]
    state.write_text(state.read_text()[:100])  # cut short
    again = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=300, env=_env(),
                           cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "Tune's saved state is unreadable" in again.stdout
    df, trials = _check_study_matches_trials_csv(out)
    assert len(df) == 4 and set(df["status"]) == {"completed"} and set(kept) <= set(df["trial_id"])
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4  # the kept ones once, not re-added
    # A trial running at Ctrl-C is lost with Tune's state: FAIL in the study, its number not reused.
    assert all(t.user_attrs.get("lost") for t in trials if t.state.name == "FAIL")
    assert len(trials) == 4 + sum(t.state.name == "FAIL" for t in trials)
    print(f"lost Tune state after {len(kept)} kept trial(s): study {[(t.number, t.state.name) for t in trials]}; "
          f"trials.csv numbers {sorted(df['trial_number'])}")


# -- --wandb / --mlflow end to end, offline (only where the package is installed) ------------------

@pytest.mark.slow  # a Ray search in a subprocess
def test_wandb_offline_gets_a_run_per_trial(tmp_path):
    pytest.importorskip("wandb")
    proc = _search(tmp_path, "--min-plasticity-margin", "0", "--method", "finetune", "--trials", "2",
                   "--name", "wb", "--no-report", "--wandb", "clsearch-test",
                   env=_env(WANDB_MODE="offline", WANDB_SILENT="true"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    runs = sorted((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    df = pd.read_csv(tmp_path / "wb" / "trials.csv", dtype={"trial_id": str})
    assert len(runs) == len(df) >= 2, runs  # every trial, the front's confirmation trials included
    assert {r.name.rsplit("-", 1)[-1] for r in runs} == set(df["trial_id"])  # wandb run id = Tune's trial id


@pytest.mark.slow  # a Ray search in a subprocess
def test_mlflow_file_store_gets_a_run_per_trial_with_the_objectives(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads a file store only when told to (as run.py does)

    uri = (tmp_path / "mlruns").as_uri()
    proc = _search(tmp_path, "--min-plasticity-margin", "0", "--method", "finetune", "--trials", "2",
                   "--name", "ml", "--no-report", "--mlflow", uri)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("ml")  # the search's name
    runs = client.search_runs([experiment.experiment_id])
    df = pd.read_csv(tmp_path / "ml" / "trials.csv", dtype={"trial_id": str})
    assert len(runs) == len(df) >= 2  # every trial, the front's confirmation trials included
    assert sorted(r.data.metrics["final_acc"] for r in runs) == pytest.approx(sorted(df["final_acc"]))
    assert all(r.data.tags["clsearch.search"] == "ml" for r in runs)

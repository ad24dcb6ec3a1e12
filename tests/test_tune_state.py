"""Reading Tune's saved experiment state (search/tune_state.py): which trials a
resume continues, whether a search really ended, and the lost-checkpoint mend.

Fast tests on state files laid out as Ray Tune writes them; the end-to-end
case (a real search interrupted, its running trial's checkpoint deleted, then
resumed) is the slow test at the bottom."""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from search import tune_state
from search.run import unfinished_trials

ROOT = Path(__file__).resolve().parent.parent


def _manager(*checkpoints: str) -> dict:
    """A trial's checkpoint manager as Tune stores it: a hex cloudpickle whose
    bytes hold the checkpoint folders' paths."""
    blob = pickle.dumps({"results": [f"/somewhere/tune/trial_x/{c}" for c in checkpoints],
                         "latest": f"/somewhere/tune/trial_x/{checkpoints[-1]}" if checkpoints else None})
    return {"_type": "CLOUDPICKLE_FALLBACK", "value": blob.hex()}


def _write_state(tune_dir: Path, trials: list[tuple[str, str, tuple[str, ...]]], name: str = "2026-01-01_00-00-00"):
    tune_dir.mkdir(parents=True, exist_ok=True)
    entries = [[json.dumps({"trial_id": tid, "status": status, "relative_logdir": f"trial_000{i}_{tid}"}),
                json.dumps({"checkpoint_manager": _manager(*ckpts)})]
               for i, (tid, status, ckpts) in enumerate(trials)]
    path = tune_dir / f"experiment_state-{name}.json"
    path.write_text(json.dumps({"trial_data": entries, "runner_data": {}}))
    return path


def test_saved_trials_give_status_folder_and_newest_checkpoint(tmp_path):
    _write_state(tmp_path, [("aa", "TERMINATED", ("checkpoint_000002",)),
                            ("bb", "RUNNING", ("checkpoint_000000", "checkpoint_000001")),
                            ("cc", "PENDING", ())])
    assert tune_state.saved_trials(tmp_path) == [
        tune_state.SavedTrial("aa", "TERMINATED", "trial_0000_aa", "checkpoint_000002"),
        tune_state.SavedTrial("bb", "RUNNING", "trial_0001_bb", "checkpoint_000001"),
        tune_state.SavedTrial("cc", "PENDING", "trial_0002_cc", None)]
    assert tune_state.unended_in_saved_state(tmp_path) == ["bb", "cc"]
    assert tune_state.saved_trial_ids(tmp_path) == {"aa", "bb", "cc"}


def test_the_newest_state_is_the_greatest_name_not_the_newest_mtime(tmp_path):
    """Tune's restore reads the file with the greatest name (one per driver
    session, named by its start), and syncing the folder on restore gives every
    file the same mtime; an older session's file touched last must not win."""
    new = _write_state(tmp_path, [("aa", "TERMINATED", ())], name="2026-01-02_00-00-00")
    old = _write_state(tmp_path, [("aa", "RUNNING", ())], name="2026-01-01_00-00-00")
    later = time.time() + 10
    os.utime(old, (later, later))
    assert tune_state.newest_state_file(tmp_path) == new
    assert tune_state.unended_in_saved_state(tmp_path) == []


def test_unreadable_or_missing_state_reads_as_none(tmp_path):
    assert tune_state.saved_trials(tmp_path) == [] and not tune_state.state_readable(tmp_path)
    path = _write_state(tmp_path, [("aa", "RUNNING", ("checkpoint_000000",))])
    assert tune_state.state_readable(tmp_path)
    path.write_text(path.read_text()[:40])  # cut short, as by a full disk
    assert not tune_state.state_readable(tmp_path)
    assert tune_state.saved_trials(tmp_path) == [] and tune_state.recreate_lost_checkpoints(tmp_path) == []


def test_lost_checkpoint_of_an_unended_trial_is_recreated_empty(tmp_path):
    _write_state(tmp_path, [("aa", "TERMINATED", ("checkpoint_000002",)),   # ended: Tune does not restore it
                            ("bb", "RUNNING", ("checkpoint_000001",)),      # gone: mended
                            ("cc", "PAUSED", ("checkpoint_000000",)),       # still there: left alone
                            ("dd", "RUNNING", ())])                         # no checkpoint yet: nothing to mend
    (tmp_path / "trial_0002_cc" / "checkpoint_000000").mkdir(parents=True)
    (tmp_path / "trial_0002_cc" / "checkpoint_000000" / "state.pt").write_bytes(b"x")
    mended = tune_state.recreate_lost_checkpoints(tmp_path)
    assert [t.trial_id for t in mended] == ["bb"]
    folder = tmp_path / "trial_0001_bb" / "checkpoint_000001"
    assert folder.is_dir() and not any(folder.iterdir())
    assert not (tmp_path / "trial_0000_aa").exists()
    assert (tmp_path / "trial_0002_cc" / "checkpoint_000000" / "state.pt").read_bytes() == b"x"
    assert tune_state.recreate_lost_checkpoints(tmp_path) == []  # once is enough


def _grid(tune_dir: Path, *statuses: tuple[str, str]):
    trials = [SimpleNamespace(trial_id=tid, status=status) for tid, status in statuses]
    return SimpleNamespace(_experiment_analysis=SimpleNamespace(trials=trials, experiment_path=str(tune_dir)))


def test_a_trial_fit_returns_terminated_but_saved_running_is_unfinished(tmp_path):
    """Ctrl-C: Tune saves its state (trial RUNNING, resumable), then stops the
    actors, and the trial object ``fit`` returns can read TERMINATED. The
    search must still count it unfinished (exit 130, keep its checkpoint), not
    "finished" (which removed the checkpoint the resume needed)."""
    _write_state(tmp_path, [("aa", "TERMINATED", ()), ("bb", "RUNNING", ("checkpoint_000000",))])
    assert unfinished_trials(_grid(tmp_path, ("aa", "TERMINATED"), ("bb", "TERMINATED"))) == 1
    assert unfinished_trials(_grid(tmp_path, ("aa", "TERMINATED"), ("bb", "RUNNING"))) == 1  # counted once
    _write_state(tmp_path, [("aa", "TERMINATED", ()), ("bb", "TERMINATED", ())])
    assert unfinished_trials(_grid(tmp_path, ("aa", "TERMINATED"), ("bb", "TERMINATED"))) == 0
    assert unfinished_trials(_grid(tmp_path / "gone", ("aa", "ERROR"), ("bb", "PENDING"))) == 1


def test_a_trial_whose_worker_died_is_ended_although_its_saved_entry_says_running(tmp_path):
    """Tune refreshes a trial's saved entry only while its actor lives: a trial
    whose worker died past --max-failures comes back ERROR from ``fit`` while
    the saved state still says RUNNING. It has ended: an all-failed search must
    exit 2, not report itself interrupted (130)."""
    _write_state(tmp_path, [("aa", "RUNNING", ("checkpoint_000000",))])
    assert unfinished_trials(_grid(tmp_path, ("aa", "ERROR"))) == 0
    assert unfinished_trials(_grid(tmp_path, ("aa", "TERMINATED"))) == 1  # Ctrl-C, as above


def _record(results_dir: Path, trial_id: str, status: str) -> None:
    folder = results_dir / "trials" / trial_id
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"trial_id": trial_id, "status": status}))


def test_the_search_phase_is_over_when_only_diverged_trials_errored(tmp_path):
    """A resume skips restoring the search's experiment when every planned trial
    ended and the errored ones diverged (restart_errored would train them again
    to the same NaN under new ids); any other error, an unended trial or a
    trial short of the plan means the experiment is restored."""
    from search.run import search_phase_over

    tune_dir = tmp_path / "tune"
    _record(tmp_path, "aa", "completed")
    _record(tmp_path, "bb", "diverged")
    _record(tmp_path, "cc", "error")
    _write_state(tune_dir, [("aa", "TERMINATED", ()), ("bb", "ERROR", ())])
    assert search_phase_over(tune_dir, tmp_path, planned=2)
    assert not search_phase_over(tune_dir, tmp_path, planned=3)        # a trial still to start
    _write_state(tune_dir, [("aa", "TERMINATED", ()), ("cc", "ERROR", ())])
    assert not search_phase_over(tune_dir, tmp_path, planned=2)        # a dead worker: worth the retry
    _write_state(tune_dir, [("aa", "RUNNING", ("checkpoint_000000",)), ("bb", "ERROR", ())])
    assert not search_phase_over(tune_dir, tmp_path, planned=2)        # Ctrl-C left it running
    _write_state(tune_dir, [("bb", "ERROR", ())])
    assert not search_phase_over(tune_dir, tmp_path, planned=1)        # nothing finished: fails again, exit 2


# -- end to end ---------------------------------------------------------------------------------------

def _env() -> dict[str, str]:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    env.pop("CL_DATA_DIR", None)
    return env


def _records(trials_dir: Path) -> dict[str, dict]:
    out = {}
    for f in trials_dir.glob("*/result.json"):
        try:
            out[f.parent.name] = json.loads(f.read_text())
        except (OSError, ValueError):
            pass
    return out


@pytest.mark.slow  # two Ray searches in subprocesses (~40 s on two cores)
def test_a_running_trial_whose_checkpoint_is_gone_trains_again_on_resume(tmp_path):
    """Ctrl-C while a trial runs past its first task; its checkpoint folder is
    then deleted (a driver killed between Tune deleting the older checkpoint and
    saving the state naming the newer one leaves the same). Without the mend,
    Ray's restore fails three times and the trial ends as an error; with it, the
    trial trains again from its first task and ends completed, with the numbers
    of an uninterrupted run (seeded)."""
    name = "ckptlost"
    args = [sys.executable, str(ROOT / "search" / "run.py"), "--dataset", "synthetic", "--cpus-per-trial", "1",
            "--results-root", str(tmp_path), "--method", "finetune", "--trials", "2", "--max-concurrent", "1",
            "--epochs", "30", "--name", name, "--no-report", "--min-plasticity-margin", "0", "--confirm-seeds", "0"]
    folder = tmp_path / name
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
                            cwd=tmp_path, start_new_session=True)
    victim = None
    deadline = time.time() + 240
    while victim is None and time.time() < deadline and proc.poll() is None:
        for tid, d in _records(folder / "trials").items():
            # Running, past its first task, with a checkpoint in Tune's storage.
            if d.get("status") == "running" and 1 <= len(d.get("acc_task_il", [])) < 3 \
                    and list((folder / "tune").glob(f"trial_*_{tid}/checkpoint_*")):
                victim = tid
        time.sleep(0.05)
    assert victim is not None, "no trial was seen running after its first task"
    os.killpg(proc.pid, signal.SIGINT)
    first, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, first[-3000:]
    saved = {t.trial_id: t for t in tune_state.saved_trials(folder / "tune")}
    assert saved[victim].status not in tune_state.ENDED and saved[victim].checkpoint, (saved, first[-2000:])
    for ckpt in (folder / "tune").glob(f"trial_*_{victim}/checkpoint_*"):
        subprocess.run(["rm", "-rf", str(ckpt)], check=True)

    again = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=300, env=_env(),
                           cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"_{victim} train again from the first task" in again.stdout, again.stdout[-3000:]
    df = pd.read_csv(folder / "trials.csv", dtype={"trial_id": str})
    assert len(df) == 2 and set(df["status"]) == {"completed"}, df[["trial_id", "status", "error"]]
    record = _records(folder / "trials")[victim]
    assert record["restores"] == []  # trained from its first task, not restored from a checkpoint
    # Seeded: the same matrices as the other path to the same config (a direct run).
    from tests.test_faults import _direct_run_matrices, _same
    class_il, task_il = _direct_run_matrices(folder, record)
    assert _same(record["acc_class_il"], class_il) and _same(record["acc_task_il"], task_il)

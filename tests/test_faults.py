"""Faults, each one really injected: an interrupted run, a killed trial worker,
a killed search driver, a write that fails midway.

- unit: a run stopped by an exception after task k and resumed from the
  checkpoint saved after task k ends with EXACTLY the accuracy matrices and the
  model weights of an uninterrupted run, for every registered strategy;
- search: the test SIGKILLs a trial's worker process mid-run (pid from the
  trial's result.json); Tune restarts the trial from its last per-task
  checkpoint and its final matrices equal a direct run of the same config;
- driver: the test SIGKILLs the search driver mid-search, then ``--resume``
  finishes the search with the requested number of trials, none lost, none
  duplicated; and killed just after a trial finished, with that trial's Tune
  checkpoints deleted before ``--resume``: Ray's restore of it fails, and it
  stays completed, unchanged, never logged as FAILED;
- atomic writes: ENOSPC in the middle of a write, and a writer SIGKILLed in the
  middle of one, leave the previous file intact and the report buildable.

The two Ray searches cost ~30-60 s each on two cores (Ray start-up dominates).
"""
from __future__ import annotations

import errno
import json
import re
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import strategies
from strategies.checkpoint import LoopState, load_state, save_state
from strategies.loop import make_strategy, run
from core.files import write_json_atomic
from tests.helpers import tiny_loop_config

ROOT = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(ROOT / "search" / "run.py")]

# Every strategy with its default config (the stream is big enough for every
# default memory), plus replay with distillation: replay's default keeps no
# teacher, and this case checkpoints an exemplar memory and a frozen teacher
# together. The others hold their characteristic state by default: iCaRL
# (memory, teacher, class means), LwF (teacher), EWC (Fisher + anchors), GEM
# and GDumb (memories), PackNet (masks, per-task BN), DER (extractors).
CASES = [(method, {}) for method in sorted(strategies.STRATEGIES)] + [("replay", {"kd_weight": 1.0})]


@pytest.fixture
def stream(default_config_stream):
    return default_config_stream


class Interrupted(Exception):
    """The injected fault of the unit tests."""


def _same(a, b) -> bool:
    """Exact equality of accuracy matrices, NaN == NaN (PackNet's class-IL)."""
    return json.dumps(a) == json.dumps(b)


def _weights(strategy) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in strategy.model.state_dict().items()}


def _run_interrupted(method, stream, cfg, folder: Path, stop_after: int, overrides: dict | None = None):
    """Run until the callback raises after task ``stop_after``; return the
    checkpoint file written after that task."""
    def checkpoint(state: LoopState) -> None:
        save_state(state, folder / f"after{state.tasks_done}.pt", stream)

    def callback(result) -> None:
        if result.tasks_done == stop_after:
            raise Interrupted(f"fault injected after task {stop_after}")

    strategy = make_strategy(method, overrides or {}, stream, cfg)
    with pytest.raises(Interrupted):
        run(strategy, stream, cfg, callback, log=None, checkpoint=checkpoint)
    assert sorted(p.name for p in folder.glob("*.pt")) == [f"after{k}.pt" for k in range(1, stop_after + 1)]
    return folder / f"after{stop_after}.pt"


# -- a: interrupted and resumed runs are bit-identical --------------------------------

@pytest.mark.parametrize("method, overrides", CASES, ids=[m + ("+" + ",".join(o) if o else "") for m, o in CASES])
@pytest.mark.slow  # 3 runs per case, default configs: 1-13 s of CPU each, 34 s for the 11
def test_run_resumed_after_an_interruption_is_bit_identical(method, overrides, stream, tmp_path):
    cfg = tiny_loop_config(augment="crop")  # the loop's generator also drives the crops
    reference_strategy = make_strategy(method, overrides, stream, cfg)
    reference = run(reference_strategy, stream, cfg, log=None)
    assert reference.status == "completed"

    for stop_after in (1, 2):
        folder = tmp_path / f"stop{stop_after}"
        ckpt = _run_interrupted(method, stream, cfg, folder, stop_after, overrides)
        # A fresh start would have reseeded; scramble every global RNG so only the
        # restored states can give the same numbers.
        torch.manual_seed(987654)
        np.random.seed(4321)
        random.seed(4321)
        state = load_state(ckpt, stream)
        assert state.tasks_done == stop_after and state.result.status == "running"
        # Stream data are referenced, not stored: the seen tasks are the stream's own.
        assert all(t is stream.tasks[i] for i, t in enumerate(state.strategy.tasks))
        resumed = run(state.strategy, stream, cfg, log=None, resume=state)

        assert resumed.status == "completed" and resumed.tasks_done == stream.num_tasks
        assert _same(resumed.acc_class_il, reference.acc_class_il), (method, stop_after)
        assert _same(resumed.acc_task_il, reference.acc_task_il), (method, stop_after)
        assert resumed.eval_sizes == reference.eval_sizes and resumed.memory_size == reference.memory_size
        assert _same(resumed.metrics, reference.metrics)
        ref_w, res_w = _weights(reference_strategy), _weights(state.strategy)
        assert ref_w.keys() == res_w.keys()
        for k in ref_w:  # the weights too, bit for bit: stronger than accuracies of 1.0
            assert torch.equal(ref_w[k], res_w[k]), (method, stop_after, k)
        assert len(resumed.timings) == stream.num_tasks


def test_resume_without_the_saved_random_state_would_differ(stream, tmp_path):
    """Control: the comparison above can fail. Resuming replay+KD with the loop's
    generator reset instead of restored gives other weights."""
    cfg = tiny_loop_config(augment="crop")
    reference_strategy = make_strategy("replay", {"kd_weight": 1.0}, stream, cfg)
    run(reference_strategy, stream, cfg, log=None)
    ckpt = _run_interrupted("replay", stream, cfg, tmp_path, 1, {"kd_weight": 1.0})
    state = load_state(ckpt, stream)
    state.loop_rng = torch.Generator().manual_seed(cfg.seed).get_state()
    run(state.strategy, stream, cfg, log=None, resume=state)
    ref_w, res_w = _weights(reference_strategy), _weights(state.strategy)
    assert any(not torch.equal(ref_w[k], res_w[k]) for k in ref_w)


def test_checkpoint_refuses_another_stream_and_another_loop_start(stream, tmp_path):
    from datasets import build_stream, make_synthetic

    cfg = tiny_loop_config()
    ckpt = _run_interrupted("icarl", stream, cfg, tmp_path, 1)
    other = build_stream(make_synthetic(num_classes=6, train_per_class=30, test_per_class=10, image_size=8, seed=0),
                         num_tasks=3, val_fraction=0.2, seed=0)
    with pytest.raises(ValueError, match="does not match"):
        load_state(ckpt, other)
    state = load_state(ckpt, stream)
    with pytest.raises(ValueError, match="pass state.strategy"):
        run(make_strategy("icarl", {}, stream, cfg), stream, cfg, log=None, resume=state)


# -- helpers for the Ray searches ----------------------------------------------------------

def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_AUTH_MODE"] = "disabled"
    env.pop("CL_DATA_DIR", None)
    return env


def _results(trials_dir: Path) -> dict[str, dict]:
    out = {}
    for f in trials_dir.glob("*/result.json"):
        try:
            out[f.parent.name] = json.loads(f.read_text())
        except (OSError, ValueError):
            pass  # being replaced right now: read it next time
    return out


def _session_processes(sid: int) -> list[int]:
    """Pids of the processes in session ``sid``: the driver this test started
    with ``start_new_session=True`` and what it spawned (Ray's raylet, workers...)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of /proc/PID/stat: session id
            pids.append(int(d.name))
    return pids


def _kill_session(sid: int) -> list[int]:
    pids = _session_processes(sid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def _direct_run_matrices(results_dir: Path, d: dict) -> tuple[list, list]:
    """The matrices of a trial's config run directly through the loop (no Ray)."""
    from core.protocol import StreamProtocol
    from datasets.protocol import load_stream
    from search.cli import loop_config_from_dict

    spec = json.loads((results_dir / "search.json").read_text())
    stream = load_stream(StreamProtocol.from_dict(spec["stream_protocol"]))
    cfg = loop_config_from_dict(spec["loop"], threads=1, device="cpu")
    result = run(make_strategy(spec["method"], d["params"], stream, cfg), stream, cfg, log=None)
    return result.acc_class_il, result.acc_task_il


# -- b: a trial's worker SIGKILLed mid-run ---------------------------------------------

@pytest.mark.slow  # Ray search in a subprocess
def test_killed_trial_worker_is_resumed_from_its_last_task_checkpoint(tmp_path):
    name = "workerkill"
    args = [*RUN, "--dataset", "synthetic", "--cpus-per-trial", "1", "--results-root", str(tmp_path),
            "--method", "replay", "--set", "memory=30", "--trials", "2", "--max-concurrent", "1",
            "--epochs", "40", "--name", name, "--no-report", "--min-plasticity-margin", "0", "--confirm-seeds", "0"]
    log = tmp_path / "driver.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=_env(), cwd=tmp_path,
                                start_new_session=True)
    trials_dir = tmp_path / name / "trials"
    try:
        victim = None
        deadline = time.time() + 240
        while victim is None and time.time() < deadline and proc.poll() is None:
            for tid, d in _results(trials_dir).items():
                # Running, past its first task, and its checkpoint is in Tune's storage.
                if (d["status"] == "running" and 1 <= len(d["acc_task_il"]) < 3
                        and list((tmp_path / name / "tune").glob(f"trial_*_{tid}/checkpoint_*"))):
                    victim = (tid, d["pid"], len(d["acc_task_il"]))
            time.sleep(0.05)
        assert victim is not None, "no trial was seen running after its first task\n" + log.read_text()[-3000:]
        tid, pid, done_at_kill = victim
        os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_session(proc.pid)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert f"({tid}) failed (worker died or raised); retrying" in text  # "trial N (id) failed ..."

    df = pd.read_csv(tmp_path / name / "trials.csv")
    assert len(df) == 2 and df["trial_id"].is_unique and set(df["status"]) == {"completed"}, df
    d = json.loads((trials_dir / tid / "result.json").read_text())
    assert d["status"] == "completed" and d["pid"] != pid  # finished by another worker process
    # Restarted once, from a per-task checkpoint (task 1 or later), not from scratch.
    assert len(d["restores"]) == 1 and 1 <= d["restores"][0] <= done_at_kill + 1, d["restores"]
    # ...and the result is exactly an uninterrupted run's.
    class_il, task_il = _direct_run_matrices(tmp_path / name, d)
    assert _same(d["acc_class_il"], class_il) and _same(d["acc_task_il"], task_il)
    print(f"worker {pid} of trial {tid} killed after task {done_at_kill}; restored from task "
          f"{d['restores'][0]}; final class-IL row {d['acc_class_il'][-1]} == direct run")


# -- c: the driver SIGKILLed mid-search, then --resume ----------------------------------------

@pytest.mark.slow  # Ray searches in subprocesses
def test_killed_driver_resumes_with_every_trial_kept_and_none_duplicated(tmp_path):
    """The moment of the kill is chosen: just after the driver starts a new trial
    (its "started" line), the driver is frozen (SIGSTOP) until that trial's worker
    has written its first result, then SIGKILLed. The trial is then on disk but,
    most likely, not yet in Tune's last saved experiment state -- the case that
    gives one row too many if nothing is done about it."""
    name = "driverkill"
    args = [*RUN, "--dataset", "synthetic", "--cpus-per-trial", "1", "--results-root", str(tmp_path),
            "--method", "finetune", "--trials", "4", "--max-concurrent", "1", "--epochs", "30",
            "--name", name, "--no-report", "--min-plasticity-margin", "0", "--confirm-seeds", "0"]
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=_env(), cwd=tmp_path,
                                start_new_session=True)
    trials_dir = tmp_path / name / "trials"
    try:
        newcomer = None
        deadline = time.time() + 240
        while newcomer is None and time.time() < deadline and proc.poll() is None:
            results = _results(trials_dir)
            if any(d["status"] == "completed" for d in results.values()):
                # "[time] trial 1 (ab12cd34) started: ..." -> the Tune id in the parentheses.
                started = [line.split(" (", 1)[1].split(")", 1)[0] for line in log.read_text().splitlines()
                           if " started: " in line]
                fresh = [t for t in started if t not in results]
                if fresh:
                    newcomer = fresh[-1]
                    os.kill(proc.pid, signal.SIGSTOP)
            time.sleep(0.02)
        assert newcomer is not None, "the search did not get to a second trial\n" + log.read_text()[-3000:]
        before = {t: d for t, d in _results(trials_dir).items() if d["status"] == "completed"}
        deadline = time.time() + 60
        while time.time() < deadline and newcomer not in _results(trials_dir):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        time.sleep(1)
        _kill_session(proc.pid)  # what the driver left behind (its Ray workers)
    on_disk = _results(trials_dir)
    states = sorted((tmp_path / name / "tune").glob("experiment_state-*.json"))
    in_snapshot = bool(states) and newcomer in states[-1].read_text()

    again = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=300, env=_env(),
                           cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming" in again.stdout
    df = pd.read_csv(tmp_path / name / "trials.csv")
    assert len(df) == 4 and df["trial_id"].is_unique, df  # the requested number, no duplicates
    assert set(df["status"]) == {"completed"}, df
    final = _results(trials_dir)
    for t, d in before.items():  # every trial finished before the kill is kept, same numbers
        assert t in final and _same(final[t]["acc_class_il"], d["acc_class_il"])
    # Which case happened is decided by Tune's own saved state, whose encoding the
    # text search above only guesses at: judge by the outcome, which must be one of
    # the two, never both and never neither.
    orphaned = (tmp_path / name / "trials_orphaned" / newcomer / "result.json").is_file()
    if newcomer in final:  # Tune knew the trial: it continued it from its checkpoint
        assert final[newcomer]["status"] == "completed" and not orphaned
    elif newcomer in on_disk:  # Tune never heard of it: it ran a replacement; its files are set aside
        assert orphaned and "set aside 1 unfinished trial folder(s)" in again.stdout
    else:  # its worker never got to write (the frozen driver had not handed it the trial): nothing to set aside
        assert not orphaned and "set aside" not in again.stdout
    # The Optuna study file: each trials.csv row once, under its number; a trial Tune
    # never heard of is FAIL there ("lost"), its number not reused.
    from tests.test_ecosystem import _check_study_matches_trials_csv
    _, study_trials = _check_study_matches_trials_csv(tmp_path / name)
    print(f"driver killed with {len(before)} trial(s) completed and {newcomer} on disk "
          f"({len(on_disk[newcomer]['acc_task_il']) if newcomer in on_disk else 0} task(s)), "
          f"{'in' if in_snapshot else 'not in'} Tune's last snapshot; resumed: {len(df)} trials; "
          f"restores of the kept ones: {[final[t]['restores'] for t in before]}; "
          f"study: {[(t.number, t.state.name) for t in study_trials]}")


@pytest.mark.slow  # two Ray searches in subprocesses: 30-40 s on two shared cores
def test_finished_trial_whose_checkpoint_is_gone_stays_completed_after_a_driver_kill(tmp_path):
    """A trial finishes, the driver is SIGKILLed, and the trial's Tune checkpoints
    are gone before ``--resume`` (Tune keeps one per trial and deletes the older
    one; its saved experiment state can point at the deleted one). Tune's state
    still lists the trial as running from a checkpoint, so the resume asks Ray to
    restore it, and Ray's restore of a missing folder fails ("does not exist on
    storage anymore") before the trainable runs -- so the resume first gives it an
    empty one. The trial's own result.json says completed: the resumed search
    must keep it as it is -- completed, same numbers, one row -- and its live
    log must not call it FAILED."""
    name = "ckptgone"
    trials = 3
    args = [*RUN, "--dataset", "synthetic", "--cpus-per-trial", "1", "--results-root", str(tmp_path),
            "--method", "finetune", "--trials", str(trials), "--max-concurrent", "1", "--epochs", "20",
            "--name", name, "--no-report", "--min-plasticity-margin", "0", "--confirm-seeds", "0"]
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=_env(), cwd=tmp_path,
                                start_new_session=True)
    folder = tmp_path / name
    trials_dir = folder / "trials"
    try:
        before = {}
        deadline = time.time() + 240
        while not before and time.time() < deadline and proc.poll() is None:
            before = {t: d for t, d in _results(trials_dir).items() if d["status"] == "completed"}
            time.sleep(0.02)
        assert before, "no trial finished\n" + log.read_text()[-3000:]
        # Frozen at once, then killed: Tune's last saved state is the one from the
        # finished trial's last checkpoint (Tune saves its state after every trial
        # checkpoint), which lists the trial as still running.
        os.kill(proc.pid, signal.SIGSTOP)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        time.sleep(1)
        _kill_session(proc.pid)  # what the driver left behind (its Ray workers)
    assert len(before) == 1, before
    (tid, record), = before.items()
    checkpoints = list((folder / "tune").glob(f"*{tid}*/checkpoint_*"))
    assert checkpoints, sorted(p.name for p in (folder / "tune").iterdir())
    for ckpt in checkpoints:
        shutil.rmtree(ckpt)
    state = _tune_trial_state(folder / "tune", tid)

    t0 = time.time()
    again = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=300, env=_env(),
                           cwd=tmp_path)
    resumed_s = time.time() - t0
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming" in again.stdout
    df = pd.read_csv(folder / "trials.csv", dtype={"trial_id": str})
    assert len(df) == trials and df["trial_id"].is_unique, df  # every planned trial, once
    assert set(df["status"]) == {"completed"}, df[["trial_id", "status", "error"]]
    final = _results(trials_dir)
    assert final[tid] == record  # kept as it was: completed, same numbers, not retrained
    assert df.set_index("trial_id").loc[tid, "status"] == "completed"
    # The live log names a trial "trial <number> (<id>)".
    lines = [line for line in again.stdout.splitlines() if f"({tid})" in line]
    # The case really happened: Tune's state had the trial resume from a checkpoint
    # that is gone; the resume gave it an empty folder (Ray's restore of a missing
    # one fails) and the trial reported its record.
    assert re.search(rf"lost their checkpoint folder; trial_\d+_{tid} had finished: kept as recorded",
                     again.stdout), (state, again.stdout[-3000:])
    assert not any("FAILED" in line or "failed (worker" in line for line in lines), "\n".join(lines)
    assert re.search(rf"trial \d+ \({tid}\) final_acc", again.stdout)  # counted as a completed trial, with its values
    print(f"trial {tid} finished, driver killed, {len(checkpoints)} checkpoint folder(s) deleted; Tune's saved "
          f"state: {state}; resumed in {resumed_s:.0f} s; its lines:\n" + "\n".join(lines))


def _tune_trial_state(tune_dir: Path, tid: str) -> str:
    """The status Tune's newest saved experiment state gives trial ``tid``."""
    states = sorted(tune_dir.glob("experiment_state-*.json"), key=lambda p: p.name)
    if not states:
        return "no saved state"
    for json_state, _ in json.loads(states[-1].read_text()).get("trial_data", []):
        trial = json.loads(json_state)
        if trial.get("trial_id") == tid:
            return str(trial.get("status"))
    return "not listed"


# -- d: atomic writes ---------------------------------------------------------------------------

def _failing_fdopen(real_fdopen):
    """os.fdopen whose file writes half of the data, then fails like a full disk."""
    class HalfThenENOSPC:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.f, name)

    return lambda fd, *a, **k: HalfThenENOSPC(real_fdopen(fd, *a, **k))


def _search_folder(tmp_path: Path) -> Path:
    from tests.fixtures_results import write_search_fixture

    out = tmp_path / "search"
    write_search_fixture(out)
    return out


@pytest.mark.slow  # a training run and a full report: ~8 s of CPU
def test_full_disk_midway_keeps_the_previous_result_and_checkpoint(tmp_path, stream, monkeypatch):
    from analysis.report import build_report
    from analysis.results import trials_frame_from_results

    folder = _search_folder(tmp_path)
    target = sorted(folder.glob("trials/*/result.json"))[0]
    old = target.read_bytes()
    ckpt = _run_interrupted("replay", stream, tiny_loop_config(), tmp_path / "ckpt", 1)
    old_ckpt = ckpt.read_bytes()
    state = load_state(ckpt, stream)

    real = os.fdopen
    monkeypatch.setattr(os, "fdopen", _failing_fdopen(real))
    with pytest.raises(OSError) as info:
        write_json_atomic(target, {"format": "clsearch-result/1", "status": "completed", "junk": "x" * 10000})
    assert info.value.errno == errno.ENOSPC
    with pytest.raises(OSError):
        save_state(state, ckpt, stream)
    monkeypatch.setattr(os, "fdopen", real)

    assert target.read_bytes() == old and ckpt.read_bytes() == old_ckpt
    assert not list(folder.rglob("*.tmp")) and not list(ckpt.parent.glob("*.tmp"))
    assert load_state(ckpt, stream).tasks_done == 1
    assert len(trials_frame_from_results(folder)) == 9
    assert build_report([folder]).stat().st_size > 0


@pytest.mark.slow  # subprocess writers
def test_writer_killed_midway_leaves_the_old_file_and_a_harmless_temp_file(tmp_path):
    from analysis.report import build_report
    from analysis.results import load_search, trials_frame_from_results, write_trials_csv

    folder = _search_folder(tmp_path)
    write_trials_csv(folder)
    target = sorted(folder.glob("trials/*/result.json"))[0]
    old, old_csv = target.read_bytes(), (folder / "trials.csv").read_bytes()
    ready = tmp_path / "ready"
    # A writer that stops inside os.fsync (the data are in the temporary file,
    # the rename has not happened): the test SIGKILLs it there.
    script = textwrap.dedent(f"""
        import os, time, sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from core.files import write_json_atomic
        from analysis.results import write_trials_csv
        def stuck(fd):
            Path({str(ready)!r}).touch()
            time.sleep(600)
        os.fsync = stuck
        what = sys.argv[1]
        if what == "result":
            write_json_atomic({str(target)!r}, {{"format": "clsearch-result/1", "status": "completed", "x": "y" * 100000}})
        else:
            write_trials_csv({str(folder)!r})
    """)
    for what in ("result", "csv"):
        ready.unlink(missing_ok=True)
        writer = subprocess.Popen([sys.executable, "-c", script, what])
        deadline = time.time() + 60
        while not ready.exists() and time.time() < deadline and writer.poll() is None:
            time.sleep(0.05)
        assert ready.exists(), f"the {what} writer never reached fsync"
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
        assert writer.returncode == -signal.SIGKILL

    leftovers = sorted(p.name for p in folder.rglob("*.tmp"))
    assert len(leftovers) == 2 and all(p.startswith((".result.json.", ".trials.csv.")) for p in leftovers)
    assert target.read_bytes() == old and (folder / "trials.csv").read_bytes() == old_csv
    assert len(trials_frame_from_results(folder)) == 9 and len(load_search(folder).trials) == 9
    assert build_report([folder]).stat().st_size > 0
    write_trials_csv(folder)  # the next write goes through, temp files or not
    assert len(pd.read_csv(folder / "trials.csv")) == 9

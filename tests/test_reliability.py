"""Reliability under concurrency, full disks and dying workers (issue "reliability").

Fast tier (no subprocess beyond a short lock holder, no Ray):

- the folder lock (core/lock.py): a second holder is refused in one line naming
  the first; a lock whose holder was SIGKILLed is taken over and named as
  stale; a lock naming another host is not taken over; the file is gone after
  release, on an exception too;
- a trial whose worker died more than --max-failures times is rewritten from
  "running" to "error" with the reason, so trials.csv says failed, not truncated;
- the disk estimate and the free-space refusal; ENOSPC recognised through Ray's
  wrappers;
- --device cuda where the trials would get no GPU (none in the cluster, or
  --gpus-per-trial 0) is refused by the driver; a trial worker asked for CUDA
  without it fails naming the node, never trains on the CPU.

Slow tier (real drivers, Ray, and -- as root -- real small tmpfs mounts):

- two drivers with the same --name started together: one runs, the other is
  refused; report.py and rerun.py writing into the live folder are refused;
- a 4 MB filesystem: refused before Ray starts, saying what is needed and free;
- a disk filled up mid-search: the driver stops with one line naming the disk
  (exit 2); after space is freed, --resume completes every planned trial and
  sets none of the finished ones aside;
- a search whose only trial's worker is killed with --max-failures 0: the trial
  is "error" with the reason, and the search exits 2 ("every trial failed");
- a rerun into a read-only folder fails before any training;
- a driver SIGKILLed alone leaves no Ray process behind (search/ray_watchdog.py).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from core.errors import UserError
from core.lock import LOCK_NAME, FolderLock, FolderLocked, read_holder

ROOT = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(ROOT / "search" / "run.py")]
REPORT = [sys.executable, str(ROOT / "analysis" / "report.py")]
RERUN = [sys.executable, str(ROOT / "search" / "rerun.py")]
# The did-not-learn rule is off (--min-plasticity-margin 0): these tiny searches test
# scheduling, files and faults, not whether 1-epoch trials on synthetic data learn.
TINY = ["--dataset", "synthetic", "--cpus-per-trial", "1", "--no-report", "--min-plasticity-margin", "0", "--confirm-seeds", "0"]


# -- the lock ------------------------------------------------------------------------------

def test_second_holder_is_refused_naming_the_first(tmp_path):
    first = FolderLock(tmp_path / "s", "search")
    assert first.acquire() is None
    info = read_holder(tmp_path / "s")
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname() and info["purpose"] == "search"
    with pytest.raises(FolderLocked, match=rf"in use by another process \(pid {os.getpid()} on "):
        FolderLock(tmp_path / "s", "report").acquire()
    first.release()
    assert not (tmp_path / "s" / LOCK_NAME).exists()
    with FolderLock(tmp_path / "s", "report"):  # free again
        assert (tmp_path / "s" / LOCK_NAME).exists()
    assert not (tmp_path / "s" / LOCK_NAME).exists()


def test_lock_is_released_when_the_holder_raises(tmp_path):
    with pytest.raises(RuntimeError):
        with FolderLock(tmp_path, "search"):
            raise RuntimeError("boom")
    assert FolderLock(tmp_path, "search").acquire() is None


@pytest.mark.slow  # a subprocess holds the lock
def test_lock_of_a_sigkilled_holder_is_taken_over_and_named(tmp_path):
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time, pathlib
        sys.path.insert(0, {str(ROOT)!r})
        from core.lock import FolderLock
        FolderLock({str(tmp_path / 's')!r}, "search").acquire()
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(600)
    """)])
    try:
        deadline = time.time() + 60
        while not ready.exists() and time.time() < deadline:
            time.sleep(0.05)
        with pytest.raises(FolderLocked, match=f"pid {holder.pid}"):
            FolderLock(tmp_path / "s", "search").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert read_holder(tmp_path / "s")["pid"] == holder.pid  # the file outlives its holder...
    lock = FolderLock(tmp_path / "s", "search")
    note = lock.acquire()  # ...but the kernel dropped its flock: taken over
    assert note and f"stale lock of pid {holder.pid}" in note and "that process is gone" in note
    assert read_holder(tmp_path / "s")["pid"] == os.getpid()
    lock.release()


@pytest.mark.slow  # a subprocess provides a dead pid
def test_stale_file_without_flock_naming_a_dead_pid_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "x"}))
    lock = FolderLock(tmp_path, "search")
    assert f"stale lock of pid {pid}" in lock.acquire()
    lock.release()


def test_lock_of_another_host_or_a_live_pid_is_not_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 12345, "host": "elsewhere", "started": "x"}))
    with pytest.raises(FolderLocked, match="another host; if nothing runs there any more, delete"):
        FolderLock(tmp_path, "search").acquire()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": socket.gethostname(), "started": "x"}))
    with pytest.raises(FolderLocked, match="in use by another process"):
        FolderLock(tmp_path, "search").acquire()


def test_lock_on_a_file_or_an_unwritable_path_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="cannot create the folder"):
        FolderLock(tmp_path / "afile" / "sub", "rerun").acquire()


# -- honest statuses -----------------------------------------------------------------------------

class _FakeTrial:
    def __init__(self, trial_id: str, error_file: Path) -> None:
        self.trial_id, self.error_file, self.config = trial_id, str(error_file), {"lr": 0.1}


def test_worker_that_died_too_often_is_failed_not_truncated(tmp_path):
    from analysis.results import trials_frame_from_results
    from search.run import mark_dead_trial_failed
    from tests.fixtures_results import write_search_fixture

    folder = write_search_fixture(tmp_path / "s")
    df = trials_frame_from_results(folder)
    tid = df[df["status"] == "truncated"]["trial_id"].iloc[0]  # a "running" record, 2 of 3 tasks
    err = tmp_path / "error.txt"
    err.write_text("Traceback ...\nray.exceptions.ActorDiedError: The actor died unexpectedly\n")
    record = mark_dead_trial_failed(folder, _FakeTrial(tid, err), max_failures=2)
    assert record["status"] == "error"
    assert "worker died or raised 3 time(s), more than --max-failures 2: ray.exceptions.ActorDiedError" in record["error"]
    row = trials_frame_from_results(folder).set_index("trial_id").loc[tid]
    assert row["status"] == "error" and "more than --max-failures 2" in row["error"]
    # a record that already says why it failed, or that it completed, is left alone
    done = df[df["status"] == "completed"]["trial_id"].iloc[0]
    before = (folder / "trials" / done / "result.json").read_bytes()
    assert mark_dead_trial_failed(folder, _FakeTrial(done, err), 2)["status"] == "completed"
    assert (folder / "trials" / done / "result.json").read_bytes() == before


# -- devices ------------------------------------------------------------------------------------------

def _patch_cluster(monkeypatch, cpus: float, gpus: float) -> None:
    """What the driver's Ray calls report, for a one-node cluster (no Ray started)."""
    import ray

    resources = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    monkeypatch.setattr(ray, "cluster_resources", lambda: dict(resources))
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": dict(resources)}])


def test_cuda_search_is_refused_when_the_trials_would_get_no_gpu(monkeypatch):
    import argparse

    from search.run import trial_resources

    def args(gpus=None, address="10.0.0.1:6379"):
        return argparse.Namespace(cpus_per_trial=None, gpus_per_trial=gpus, address=address)

    _patch_cluster(monkeypatch, cpus=4, gpus=0)
    with pytest.raises(UserError, match=r"^--device cuda: the Ray cluster at --address has no GPU"):
        trial_resources(args(), "cuda")
    with pytest.raises(UserError, match=r"^--device cuda:1: the local Ray instance has no GPU"):
        trial_resources(args(address=None), "cuda:1")
    assert trial_resources(args(), "auto") == {"cpu": 1.0, "gpu": 0.0}
    _patch_cluster(monkeypatch, cpus=4, gpus=2)
    with pytest.raises(UserError, match=r"^--device cuda with --gpus-per-trial 0: the trials would get no GPU; "
                                        r"give --gpus-per-trial"):
        trial_resources(args(gpus=0.0), "cuda")
    assert trial_resources(args(), "cuda") == {"cpu": 1.0, "gpu": 0.25}
    assert trial_resources(args(), "auto") == {"cpu": 1.0, "gpu": 0.25}
    assert trial_resources(args(), "cpu") == {"cpu": 1.0, "gpu": 0.0}  # --device cpu holds no GPU


def test_trial_device_never_trains_a_cuda_trial_on_the_cpu():
    import torch

    from core.config import ConfigError
    from search.trainable import trial_device

    assert trial_device("cpu", 0) == "cpu" and trial_device("cpu", 1) == "cpu"
    assert trial_device("auto", 0) == "cpu"
    with pytest.raises(ConfigError, match=r"^device 'cuda' requested but Ray gave this trial no GPU \(on .+\); "
                                          r"run the search with --gpus-per-trial > 0$"):
        trial_device("cuda", 0)
    if torch.cuda.is_available():
        assert trial_device("cuda:0", 0.5) == "cuda" and trial_device("auto", 0.5) == "cuda"
    else:
        for requested in ("cuda", "auto"):
            with pytest.raises(ConfigError, match=rf"^device '{requested}' requested and Ray gave this trial 0.5 GPU, "
                                                  r"but CUDA is not available on node .+ \(torch "):
                trial_device(requested, 0.5)


# -- disk ---------------------------------------------------------------------------------------------

def test_disk_estimate_and_refusal(tmp_path, tiny_stream, monkeypatch):
    from search import run as run_mod
    from search.spaces import fit_space_to_stream, resolve_space
    from tests.helpers import tiny_loop_config

    space, fixed = resolve_space("icarl", None, {})
    space = fit_space_to_stream(space, tiny_stream)
    need = run_mod.estimate_disk_need("icarl", fixed, space, tiny_stream, tiny_loop_config(), trials=8)
    assert need.per_checkpoint > 0 and need.total > 8 * need.per_checkpoint
    monkeypatch.setattr(run_mod, "free_bytes", lambda path: 1 << 20)
    with pytest.raises(UserError, match=r"not enough disk space on / for this search: about .* MB needed .* "
                                        r"8 trials\), 1.0 MB free"):
        run_mod.check_free_space(tmp_path / "x", need)


def test_disk_full_is_recognised_through_wrappers():
    import errno

    from search.run import is_disk_full

    inner = OSError(errno.ENOSPC, "No space left on device")
    try:
        try:
            raise inner
        except OSError as exc:
            raise RuntimeError("Trial raised") from exc
    except RuntimeError as wrapped:
        assert is_disk_full(wrapped)
    assert is_disk_full(RuntimeError("ray.exceptions.RayTaskError: OSError: [Errno 28] No space left on device"))
    assert not is_disk_full(EOFError("Ran out of input")) and not is_disk_full(None)


# -- slow: real drivers -----------------------------------------------------------------------------

def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_AUTH_MODE"] = "disabled"
    env.pop("CL_DATA_DIR", None)
    return env


def _kill_session(sid: int) -> None:
    from tests.test_faults import _kill_session as kill

    kill(sid)


@pytest.mark.slow
def test_two_drivers_on_one_folder_one_is_refused(tmp_path):
    """Two drivers started together: one runs, the other is refused in one line.
    While the search runs, report.py on it and a rerun writing into it are
    refused too; then Ctrl-C stops the search, which releases the lock."""
    args = [*RUN, *TINY, "--results-root", str(tmp_path), "--method", "finetune", "--trials", "2",
            "--max-concurrent", "1", "--epochs", "400", "--name", "twin"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                              cwd=tmp_path, start_new_session=True) for _ in range(2)]
    folder = tmp_path / "twin"
    try:
        deadline = time.time() + 300
        while not list(folder.glob("trials/*/result.json")) and time.time() < deadline:
            time.sleep(0.2)
        assert list(folder.glob("trials/*/result.json")), "the search did not start"
        report = subprocess.run([*REPORT, str(folder)], capture_output=True, text=True, env=_env(), timeout=120)
        rerun = subprocess.run([*RERUN, "--method", "finetune", "--dataset", "synthetic", "--epochs", "1",
                                "--quiet", "--out", str(folder)], capture_output=True, text=True, env=_env(),
                               timeout=120)
        running = [p for p in procs if p.poll() is None]
        assert len(running) == 1, [p.communicate()[1][-2000:] for p in procs if p.poll() is not None]
        os.killpg(running[0].pid, signal.SIGINT)  # Ctrl-C
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            _kill_session(p.pid)
    codes = sorted(p.returncode for p in procs)
    assert codes == [2, 130], [o[1][-2000:] for o in outs]  # refused; interrupted (Ctrl-C: exit 130, resumable)
    loser = next(o for p, o in zip(procs, outs) if p.returncode == 2)
    lines = loser[1].strip().splitlines()
    assert len(lines) == 1 and f"{folder} is in use by another process (pid" in lines[0], loser[1]
    for proc in (report, rerun):
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and "is in use by another process (pid" in lines[-1], proc.stderr[-2000:]
    assert not (folder / "rerun").exists() and not (folder / "seed0").exists()  # the rerun wrote nothing
    assert not (folder / LOCK_NAME).exists()  # released on Ctrl-C
    assert not (folder / "trials_orphaned").exists()
    print(f"refused: {lines[-1]}")


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {proc.stderr.decode().strip()}")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.mark.slow
def test_tiny_disk_is_refused_before_ray_starts(tmp_path):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "4m")
    try:
        proc = subprocess.run([*RUN, *TINY, "--results-root", str(disk), "--method", "icarl", "--trials", "8",
                               "--epochs", "1", "--name", "small"], capture_output=True, text=True, env=_env(),
                              timeout=120, cwd=tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert f"not enough disk space on {disk} for this search: about" in lines[0] and "MB free" in lines[0]
        assert list(disk.iterdir()) == []  # nothing written
    finally:
        _umount(disk)


def _completed(trials_dir: Path) -> dict[str, str]:
    out = {}
    for f in trials_dir.glob("*/result.json"):
        try:
            text = f.read_text()
            if json.loads(text)["status"] == "completed":
                out[f.parent.name] = text
        except (OSError, ValueError, KeyError):
            pass
    return out


@pytest.mark.slow
def test_disk_filled_mid_search_stops_cleanly_and_resume_completes_every_trial(tmp_path):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "48m")
    name = "full"
    args = [*RUN, *TINY, "--results-root", str(disk), "--method", "finetune", "--trials", "4",
            "--max-concurrent", "1", "--epochs", "6", "--name", name]
    filler = disk / "filler"
    try:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                                cwd=tmp_path, start_new_session=True)
        trials_dir = disk / name / "trials"
        try:
            deadline = time.time() + 300
            while not _completed(trials_dir) and time.time() < deadline and proc.poll() is None:
                time.sleep(0.2)
            assert _completed(trials_dir), "no trial finished"
            # Fill the disk: write until ENOSPC, as another program on the machine would.
            with open(filler, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * (1 << 20))
                        f.flush()
                except OSError:
                    pass
            out, err = proc.communicate(timeout=300)
        finally:
            _kill_session(proc.pid)
        lines = err.strip().splitlines()
        assert proc.returncode == 2, out[-3000:] + err[-3000:]
        assert lines and lines[-1].startswith(f"error: the disk at {disk} is full") and "--resume" in lines[-1], err
        assert "EOFError" not in err
        before = _completed(trials_dir)
        assert 1 <= len(before) < 4

        filler.unlink()  # space freed
        again = subprocess.run([*args, "--resume"], capture_output=True, text=True, env=_env(), timeout=400,
                               cwd=tmp_path)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        df = pd.read_csv(disk / name / "trials.csv")
        assert len(df) == 4 and df["trial_id"].is_unique and set(df["status"]) == {"completed"}, df
        # Only unfinished folders may be set aside (Tune replaced them), never a finished one.
        assert not _completed(disk / name / "trials_orphaned")
        after = _completed(trials_dir)
        for tid, text in before.items():  # finished before the disk filled: kept as they were
            assert after.get(tid) == text
        print(f"disk full after {len(before)} finished trial(s): stopped with {lines[-1]!r}; "
              f"resumed to {len(df)} completed trials")
    finally:
        _umount(disk)


@pytest.mark.slow
def test_worker_killed_past_max_failures_is_failed_and_the_search_exits_nonzero(tmp_path):
    name = "dead"
    args = [*RUN, *TINY, "--results-root", str(tmp_path), "--method", "finetune", "--trials", "1",
            "--max-failures", "0", "--epochs", "60", "--name", name]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            cwd=tmp_path, start_new_session=True)
    result = tmp_path / name / "trials"
    try:
        pid = None
        deadline = time.time() + 240
        while pid is None and time.time() < deadline and proc.poll() is None:
            for f in result.glob("*/result.json"):
                try:
                    pid = json.loads(f.read_text())["pid"]
                except (OSError, ValueError, KeyError):
                    pass
            time.sleep(0.1)
        assert pid is not None, "the trial never wrote its first result"
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        _kill_session(proc.pid)
    assert proc.returncode == 2, out[-2000:] + err[-2000:]
    assert err.strip().splitlines()[-1].startswith("error: every trial of the search failed (1 error)"), err
    df = pd.read_csv(tmp_path / name / "trials.csv")
    assert list(df["status"]) == ["error"] and "more than --max-failures 0" in df["error"].iloc[0], df
    record = json.loads(next(result.glob("*/result.json")).read_text())
    assert record["status"] == "error" and "worker died or raised 1 time(s)" in record["error"]
    assert "FAILED (worker died or raised" in out


def _session_names(sid: int) -> dict[int, str]:
    from tests.test_faults import _session_processes

    names = {}
    for pid in _session_processes(sid):
        try:
            names[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
        except OSError:
            pass
    return names


@pytest.mark.slow
def test_killed_driver_leaves_no_ray_process_behind(tmp_path):
    """SIGKILL of the driver alone (not its session): Ray's processes -- GCS,
    raylet, workers, the dashboard and runtime-env agents -- must go with it,
    not linger for minutes holding CPUs and the session folder."""
    args = [*RUN, *TINY, "--results-root", str(tmp_path), "--method", "finetune", "--trials", "2",
            "--max-concurrent", "1", "--epochs", "60", "--name", "orphans"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=tmp_path,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        while not list((tmp_path / "orphans" / "trials").glob("*/result.json")) and time.time() < deadline:
            time.sleep(0.2)
        before = _session_names(proc.pid)
        assert any("raylet" in c for c in before.values()), before
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        t0 = time.time()
        left = _session_names(proc.pid)
        while left and time.time() - t0 < 60:
            time.sleep(0.5)
            left = _session_names(proc.pid)
        gone_after = time.time() - t0
    finally:
        _kill_session(proc.pid)
    print(f"{len(before)} Ray processes at the kill; {len(left)} left after {gone_after:.1f} s: {sorted(left.values())}")
    assert not left, f"still alive {gone_after:.0f} s after the driver was killed: {sorted(left.values())}"


def test_enospc_anywhere_in_a_command_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    import errno

    from core.cli import cli_main

    def main(argv):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "trials.csv"))

    monkeypatch.chdir(tmp_path)
    assert cli_main(main, []) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: no space left on the disk writing {tmp_path / 'trials.csv'} (No space left on device); "
                   "free some space and run the command again (a search: with --resume)"]
    assert not (tmp_path / "clsearch-crash.log").exists()


@pytest.mark.slow
def test_rerun_into_a_read_only_folder_fails_before_training(tmp_path):
    """Root ignores file modes, so the folder is a tmpfs remounted read-only."""
    from tests.fixtures_results import write_search_fixture

    disk = tmp_path / "ro"
    _mount_tmpfs(disk, "8m")
    try:
        write_search_fixture(disk / "s")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        t0 = time.time()
        proc = subprocess.run([*RERUN, str(disk / "s"), "--seeds", "1", "--quiet"], capture_output=True, text=True,
                              env=_env(), timeout=300, cwd=tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
        assert lines[0] == f"error: cannot write in {disk / 's'} (lock file {LOCK_NAME}): Read-only file system"
        assert "[finetune]" not in proc.stderr and "rerun " not in proc.stdout  # nothing trained
        print(f"{lines[0]} after {time.time() - t0:.1f} s")
    finally:
        _umount(disk)

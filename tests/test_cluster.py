"""search/run.py and search/rerun.py --address on a real multi-node Ray cluster (issue "Reliability", 4).

The fixture starts a head and a worker node on this machine with Ray's own
multi-node tooling (``ray.cluster_utils.Cluster``: separate raylets, object
stores and node ids, one GCS), each with ONE CPU, so trials of one CPU can only
run two at a time by using both nodes. The search driver is a subprocess that
connects with ``--address``, as a user on a cluster's head would; the project's
code reaches the trial workers as Ray's ``working_dir``.

The cluster runs in a process of its own (tests/cluster_process.py), not in
pytest's: a Ray node started in a process installs Ray's SIGTERM handler and
atexit hooks there, which outlive ``Cluster.shutdown()`` (in pytest's process
the handler turned a later test's SIGTERM into a failure under load).

``--device cuda`` cannot be checked by a driver that does not see the workers'
hardware: on this GPU-less cluster, and with ``--gpus-per-trial 0`` on a
one-node cluster that declares a GPU to Ray (a resource only: the machine need
not have one), it is refused once Ray is connected, before any trial and any
file; on that declared GPU a trial finds no CUDA and fails saying so.

Ray's state of this cluster lives in a private temp folder (``RAY_TMPDIR``, set
for the cluster's and the driver's processes only): ``Cluster`` writes its
address to ``<temp>/ray/ray_current_cluster``, and in the shared /tmp/ray that
file would make every later plain ``ray.init()`` on the machine (another search,
the other tests) join this cluster or, once it is gone, fail to connect. Only
the processes this fixture started are stopped.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(ROOT / "search" / "run.py")]
RERUN = [sys.executable, str(ROOT / "search" / "rerun.py")]
CLUSTER_PROCESS = [sys.executable, str(ROOT / "tests" / "cluster_process.py")]
# Each trial must outlast a trial worker's start-up on the other node (1-3 s
# here): with reuse_actors Tune hands a pending trial to an actor that just
# became free and drops the actor still starting for it, so sub-second trials
# (1-4 epochs of the synthetic stream) can all end up on one node on a loaded
# machine. 40 epochs: ~5 s a trial, ~8 s for a worker's first one.
EPOCHS = "40"

pytestmark = [pytest.mark.slow,  # a Ray cluster and searches on it, in subprocesses
              pytest.mark.skipif(sys.platform == "win32", reason="Ray's multi-node cluster utilities need Linux/macOS")]


def _start_cluster(nodes: list[dict] | None = None):
    """Yields (address, node ids, environment for the driver) of a cluster of
    ``nodes`` (tests/cluster_process.py; default: two nodes, one CPU and no GPU each)."""
    # Short path: Ray's unix sockets live below it (107-character limit).
    temp_root = Path(tempfile.mkdtemp(prefix="clray", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k not in ("CL_DATA_DIR", "RAY_ADDRESS")}
    env.update(RAY_TMPDIR=str(temp_root), RAY_AUTH_MODE="disabled")
    ready, log = temp_root / "ready.json", temp_root / "cluster.log"
    proc = None
    try:
        with open(log, "w") as out:
            # Its own session: if it ever has to be killed, its process group goes with it.
            proc = subprocess.Popen([*CLUSTER_PROCESS, str(ready), *([json.dumps(nodes)] if nodes else [])],
                                    stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    cwd=temp_root, start_new_session=True)
        deadline = time.time() + 180
        while not ready.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        if not ready.exists():
            pytest.fail(f"the cluster {nodes or 'of 2 nodes'} did not come up (exit {proc.poll()}):\n"
                        f"{log.read_text()[-3000:]}")
        info = json.loads(ready.read_text())
        yield info["address"], set(info["node_ids"]), env
    finally:
        if proc is not None:
            proc.stdin.close()  # the cluster process shuts the cluster down and exits
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        shutil.rmtree(temp_root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    """A head and a worker node, one CPU and no GPU each."""
    yield from _start_cluster()


@pytest.fixture(scope="module")
def gpu_cluster():
    """One node with one CPU and one GPU that is a Ray resource only: the machine
    need not have it (the trial worker's torch then sees no CUDA)."""
    yield from _start_cluster([{"num_cpus": 1, "num_gpus": 1}])


def search(cluster, tmp_path: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    address, _, env = cluster
    return subprocess.run([*RUN, "--address", address, "--dataset", "synthetic", "--epochs", EPOCHS,
                           "--results-root", str(tmp_path), "--no-report", "--min-plasticity-margin", "0", "--confirm-seeds", "0", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path)


def test_search_on_two_nodes_spreads_its_trials(cluster, tmp_path):
    _, node_ids, _ = cluster
    assert len(node_ids) == 2
    proc = search(cluster, tmp_path, "--method", "replay", "--trials", "4", "--cpus-per-trial", "1",
                  "--name", "two-nodes")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "two-nodes"
    df = pd.read_csv(out / "trials.csv", dtype={"trial_id": str})
    assert len(df) == 4 and df["trial_id"].is_unique
    assert set(df["status"]) == {"completed"}
    results = [json.loads((out / "trials" / tid / "result.json").read_text()) for tid in df["trial_id"]]
    assert all(r["status"] == "completed" and len(r["acc_class_il"]) == 3 for r in results)
    where = collections.Counter(r["node"]["ray_node_id"] for r in results)
    assert set(where) <= node_ids, where  # the ids are this cluster's nodes
    assert len(where) > 1, f"all trials ran on one node: {dict(where)}\n{proc.stdout[-3000:]}"
    assert all(r["node"]["hostname"] for r in results)
    print(f"trials per node: {sorted(where.values(), reverse=True)}")


def test_trial_larger_than_every_node_is_refused_before_it_hangs(cluster, tmp_path):
    # 2 CPUs in all, but no node has 2: Ray would keep the trials pending forever.
    proc = search(cluster, tmp_path, "--method", "replay", "--trials", "2", "--cpus-per-trial", "2",
                  "--name", "too-big", timeout=120)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --cpus-per-trial 2 is more than any node"), proc.stderr[-3000:]


def test_rerun_on_two_nodes_runs_its_seeds_on_both_and_writes_them_in_the_driver(cluster, tmp_path):
    """rerun.py --address: two runs of one CPU on two one-CPU nodes run at once,
    one per node; the workers only return their records, the driver writes them
    (here the disk is shared, but the design does not need it)."""
    address, node_ids, env = cluster
    out = tmp_path / "direct"
    proc = subprocess.run([*RERUN, "--address", address, "--method", "replay", "--dataset", "synthetic",
                           "--epochs", EPOCHS, "--seeds", "2", "--quiet", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"2 run(s) to train through the Ray cluster at {address}: up to 2 at a time" in proc.stdout
    records = [json.loads((out / f"seed{s}" / "result.json").read_text()) for s in (0, 1)]
    assert all(r["status"] == "completed" and r["through"] == "ray" and r["protocol"]["threads"] == 1
               for r in records)
    assert {r["node"]["ray_node_id"] for r in records} == node_ids, [r["node"] for r in records]


def test_a_cuda_rerun_on_a_cluster_without_gpus_is_refused_before_any_run(cluster, tmp_path):
    address, _, env = cluster
    proc = subprocess.run([*RERUN, "--address", address, "--method", "replay", "--dataset", "synthetic",
                           "--epochs", "1", "--seeds", "2", "--device", "cuda", "--out", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert_refused_before_start(proc, tmp_path / "d", "--device cuda: the Ray cluster at --address has no GPU")


# -- --device cuda on a cluster: the driver cannot see the workers' hardware -------------------

def assert_refused_before_start(proc: subprocess.CompletedProcess, folder: Path, message: str) -> None:
    """Exit 2, one error line naming the problem, and no results folder (no search.json)."""
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and " started: " not in proc.stdout, proc.stdout[-3000:]
    assert not folder.exists(), sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_cuda_on_a_cluster_without_gpus_is_refused_before_any_trial(cluster, tmp_path):
    proc = search(cluster, tmp_path, "--method", "replay", "--trials", "2", "--device", "cuda",
                  "--name", "cuda-no-gpu", timeout=120)
    assert_refused_before_start(proc, tmp_path / "cuda-no-gpu",
                                "--device cuda: the Ray cluster at --address has no GPU")


def test_cuda_with_no_gpu_per_trial_is_refused_before_any_trial(gpu_cluster, tmp_path):
    proc = search(gpu_cluster, tmp_path, "--method", "replay", "--trials", "2", "--device", "cuda",
                  "--gpus-per-trial", "0", "--name", "cuda-zero-gpus", timeout=120)
    assert_refused_before_start(proc, tmp_path / "cuda-zero-gpus",
                                "--device cuda with --gpus-per-trial 0: the trials would get no GPU; "
                                "give --gpus-per-trial")


def test_cuda_trial_on_a_node_without_cuda_fails_saying_why(gpu_cluster, tmp_path):
    """The cluster says it has a GPU, the worker's torch has no CUDA: the trial
    fails with the reason in its result.json, never trains on the CPU."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the declared GPU would be a real one")
    proc = search(gpu_cluster, tmp_path, "--method", "replay", "--trials", "1", "--device", "cuda",
                  "--gpus-per-trial", "1", "--max-failures", "0", "--name", "cuda-not-there", timeout=180)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "every trial of the search failed (1 error)" in proc.stderr.strip().splitlines()[-1], proc.stderr[-3000:]
    (result,) = (tmp_path / "cuda-not-there" / "trials").glob("*/result.json")
    record = json.loads(result.read_text())
    assert record["status"] == "error" and not record["acc_class_il"], record.get("error")
    assert record["error"].startswith("ConfigError: device 'cuda' requested and Ray gave this trial 1 GPU, "
                                      "but CUDA is not available on node "), record["error"]
    assert "\n" not in record["error"]
    assert f"FAILED ({record['error']})" in proc.stdout  # the live log says why, in one line

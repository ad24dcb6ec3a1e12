"""Reproducibility (issue "Reliability", item 3): on a CPU, the same config and seed
give a bit-identical accuracy matrix, and result.json holds everything needed to
rerun a result.

Per method (iCaRL; replay with KD weight 1), two direct runs of search/rerun.py on
the synthetic stream with one torch thread:

- run A: seeds 0 and 1, from an ordinary command line with ``--sequential``
  (one process, no Ray: several seeds otherwise run as Ray tasks, whose
  matrices tests/test_rerun_ray.py shows equal to this path's);
- run B: seed 0 again, from a command line rebuilt from nothing but A's seed-0
  result.json (every config field by --set, the loop settings and the stream by
  their flags) -- so equality shows both that training is deterministic and that
  the record is enough to redo it.

A's seed 1 must give a different class-IL matrix, so the equality test can fail.
The runs see a poisoned ``ray`` package first on PYTHONPATH: a direct run (and the
environment record, which reads ray's and optuna's versions from the package
metadata) must not import Ray.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
RERUN = [sys.executable, str(ROOT / "search" / "rerun.py")]
# iCaRL at a config that does not learn the synthetic stream perfectly: at its
# default (lr 0.1, multistep) every seed scores 100 % everywhere, and two equal
# matrices would prove nothing.
METHODS = {"icarl": ["--set", "lr=0.5", "--set", "lr_schedule=cosine"], "replay": ["--set", "kd_weight=1"]}
# Fields that differ between two runs of the same record: wall-clock times and
# the process that ran it (a rerun's record says when and where it ran).
TIMING_KEYS = ("timings", "train_time_s", "started", "ended", "pid")

pytestmark = pytest.mark.slow  # every test reads runs of search/rerun.py in subprocesses


def _direct_run(args: list[str], out: Path, tmp: Path) -> list[dict[str, Any]]:
    poison = tmp / "poison" / "ray"
    poison.mkdir(parents=True, exist_ok=True)
    (poison / "__init__.py").write_text('raise RuntimeError("a direct run imported Ray")\n')
    env = {k: v for k, v in os.environ.items() if k != "CL_DATA_DIR"}
    env.update(RAY_AUTH_MODE="disabled", PYTHONPATH=str(poison.parent))
    proc = subprocess.run([*RERUN, *args, "--quiet", "--out", str(out)], capture_output=True, text=True,
                          timeout=600, cwd=tmp, env=env)
    assert proc.returncode == 0, f"{args}:\n{proc.stderr[-3000:]}"
    return [json.loads(f.read_text()) for f in sorted(out.glob("seed*/result.json"))]


def rerun_args(d: dict[str, Any]) -> list[str]:
    """The command line that redoes the run recorded in result.json ``d``: the
    stream from its recorded protocol, the loop from its recorded loop config."""
    proto, sp = d["protocol"], d["stream"]["protocol"]
    args = ["--method", d["method"]]
    for key, value in d["config"].items():
        args += ["--set", f"{key}={value}"]
    args += ["--dataset", sp["dataset"], "--class-order", sp["class_order"], "--stream-seed", str(sp["stream_seed"]),
             "--val-fraction", str(sp["val_fraction"])]
    if sp["classes"] is not None:
        args += ["--classes", str(sp["classes"])]
    if sp["task_sizes"] is not None:
        args += ["--task-sizes", ",".join(map(str, sp["task_sizes"]))]
    else:
        args += ["--tasks", str(sp["tasks"])]
    args += [
        "--eval", proto["eval_split"], "--epochs", str(proto["epochs"]), "--batch-size", str(proto["batch_size"]),
        "--backbone", proto["backbone"], "--augment", proto["augment"], "--precision", proto["precision"],
        "--device", proto["device"], "--threads", str(proto["threads"]), "--seed", str(proto["seed"]),
    ]
    return args


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("repro")
    out: dict[str, dict[str, Any]] = {}
    for method, extra in METHODS.items():
        a0, a1 = _direct_run(["--method", method, *extra, "--dataset", "synthetic", "--device", "cpu",
                              "--threads", "1", "--seed", "0", "--seeds", "2", "--sequential"], tmp / f"{method}-a", tmp)
        (b0,) = _direct_run(rerun_args(a0), tmp / f"{method}-b", tmp)
        out[method] = {"a0": a0, "a1": a1, "b0": b0}
    return out


def _without_timings(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in TIMING_KEYS}


@pytest.mark.parametrize("method", METHODS)
def test_same_config_and_seed_give_bit_identical_matrices(runs, method):
    a0, b0 = runs[method]["a0"], runs[method]["b0"]
    assert a0["status"] == b0["status"] == "completed"
    assert b0["config"] == a0["config"] and b0["protocol"] == a0["protocol"] and b0["stream"] == a0["stream"]
    for kind in ("acc_class_il", "acc_task_il"):
        # JSON floats round-trip exactly, so == on the lists is bit equality.
        assert b0[kind] == a0[kind], (kind, a0[kind], b0[kind])
    assert b0["metrics"] == a0["metrics"]
    # ... and the rest of the record too (memory kept, parameter count, sizes, environment).
    assert _without_timings(b0) == _without_timings(a0)


@pytest.mark.parametrize("method", METHODS)
def test_another_seed_gives_another_matrix(runs, method):
    a0, a1 = runs[method]["a0"], runs[method]["a1"]
    assert a1["protocol"]["seed"] == 1 and a0["protocol"]["seed"] == 0
    assert a1["acc_class_il"] != a0["acc_class_il"], "seed 1 gave seed 0's matrix: the equality test proves nothing"


@pytest.mark.parametrize("method", METHODS)
def test_result_records_everything_needed_to_rerun(runs, method):
    import strategies
    from core.config import config_from_dict
    from strategies.loop import LoopConfig

    d = runs[method]["a0"]
    # config: every field of the strategy's typed config, with the values used
    config_class = strategies.STRATEGIES[method].config_class
    overrides = dict(s.split("=", 1) for s in METHODS[method][1::2])
    # (in its JSON form: a list knob such as lr_milestones is a tuple in the config, a list on disk)
    assert d["config"] == json.loads(json.dumps(dataclasses.asdict(config_from_dict(config_class, overrides))))
    # protocol: every loop setting, the seed among them
    assert set(d["protocol"]) == {f.name for f in dataclasses.fields(LoopConfig)}
    assert d["protocol"]["seed"] == 0 and d["protocol"]["threads"] == 1 and d["protocol"]["device"] == "cpu"
    # stream: dataset, class order, stream seed, tasks
    stream = d["stream"]
    assert stream["dataset"] == "synthetic" and stream["seed"] == 0
    assert sorted(stream["class_order"]) == list(range(stream["num_classes"]))
    assert sum(stream["task_classes"], []) == stream["class_order"]
    # environment: package versions and the code's commit
    env = d["environment"]
    assert env["python"] == platform.python_version()
    assert env["torch"] == torch.__version__ and env["numpy"] == np.__version__
    for package in ("ray", "optuna"):
        try:
            expected = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            expected = None
        assert env[package] == expected, package
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert env["git_commit"] == head.stdout.strip() and len(env["git_commit"]) == 40
        assert isinstance(env["git_dirty"], bool)
    else:  # not a git checkout (an unpacked release): recorded as unknown, not invented
        assert env.get("git_commit") is None

"""The one thread rule (strategies/loop.py:resolve_threads) and its record.

Results depend on the thread count (float reductions run in another order), so
a run records the number of threads torch really used, and a rerun does not
reuse a finished seed computed with another number.
"""
from __future__ import annotations

import dataclasses
import json
import os

import torch

from strategies.loop import available_cpus, make_strategy, resolve_threads, run
from tests.helpers import tiny_loop_config


def test_zero_means_the_cpus_this_process_may_use_never_torchs_default():
    assert available_cpus() == len(os.sched_getaffinity(0))
    assert resolve_threads(0) == available_cpus()
    assert resolve_threads(3) == 3


def test_a_run_records_the_threads_torch_used(tiny_stream):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # what a leftover setting would be; the rule must override it
        cfg = tiny_loop_config(epochs=1, threads=0)
        result = run(make_strategy("finetune", None, tiny_stream, cfg), tiny_stream, cfg, log=None)
        assert result.protocol["threads"] == available_cpus() == torch.get_num_threads()
        cfg2 = tiny_loop_config(epochs=1, threads=1)
        result2 = run(make_strategy("finetune", None, tiny_stream, cfg2), tiny_stream, cfg2, log=None)
        assert result2.protocol["threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_rerun_does_not_reuse_a_seed_run_with_another_thread_count(tmp_path, tiny_stream):
    from search.rerun import finished_run

    cfg = tiny_loop_config(epochs=1, threads=1)
    strategy = make_strategy("finetune", None, tiny_stream, cfg)
    d = run(strategy, tiny_stream, cfg, log=None).to_dict()
    path = tmp_path / "result.json"
    path.write_text(json.dumps(d))
    like = {"method": "finetune", "config": d["config"], "protocol": d["protocol"], "stream": d["stream"]}
    assert finished_run(path, like) is not None
    other = {**like, "protocol": {**d["protocol"], "threads": 2}}
    assert finished_run(path, other) is None
    # The device is where it ran, not what it computed: it does not block reuse.
    assert finished_run(path, {**like, "protocol": {**d["protocol"], "device": "cuda"}}) is not None
    assert dataclasses.asdict(cfg)["threads"] == 1

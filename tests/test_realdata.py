"""Real GTSRB: finetuning forgets, rehearsal does not (a cut-down notebook protocol).

Classes 0..15 in 2 tasks of 8, 4 epochs per task at lr 0.05, SimpleCNN, memory 200,
validation split by physical track. Under a minute on two cores; the full
notebook protocol numbers are in the README (search/rerun.py, recorded there).
"""
from __future__ import annotations

import numpy as np
import pytest

import strategies  # noqa: F401
from datasets import build_stream
from strategies.loop import LoopConfig, make_strategy, run

pytestmark = [pytest.mark.realdata, pytest.mark.slow]  # the real file, and training on it


@pytest.fixture(scope="module")
def gtsrb_two_tasks(gtsrb_arrays):
    return build_stream(gtsrb_arrays, classes=16, num_tasks=2, val_fraction=0.1, seed=0)


def _run(method, stream, overrides):
    # How well 4 epochs learn the first task (mostly speed-limit signs) depends on
    # the CPU's float arithmetic, not only on the seed. Measured validation
    # accuracy after task 1, 2 threads: AMD EPYC lr 0.05 62 %, lr 0.1 86 %; Intel
    # Xeon with AMX lr 0.05 90.5 %, lr 0.1 39.6 % (1 thread: 75.9 %). lr 0.05 has
    # the better worst case, and the assertions below are relations between
    # finetune and replay with levels well below both CPUs' figures. On an
    # AVX2-only AMD EPYC lr 0.05 with 2 threads ended task 1 at 33 % and with
    # 1 thread at 79.5 % (finetune): 1 thread, as a search trial gets.
    overrides = {"lr": 0.05, **overrides}
    cfg = LoopConfig(epochs=4, batch_size=128, eval_split="val", seed=0, threads=1)
    strategy = make_strategy(method, overrides, stream, cfg)
    return run(strategy, stream, cfg, log=None)


def test_finetune_forgets_and_replay_remembers_on_gtsrb(gtsrb_two_tasks):
    stream = gtsrb_two_tasks
    assert [t.classes for t in stream.tasks] == [list(range(8)), list(range(8, 16))]
    finetune = _run("finetune", stream, {})
    replay = _run("replay", stream, {"memory": 200})
    for r in (finetune, replay):
        # Task 1 is learnt: well above chance (12.5 % for 8 classes).
        assert r.status == "completed" and r.acc_class_il[0][0] > 0.5
    # Finetune: the first task's classes are overwritten (catastrophic forgetting).
    assert finetune.acc_class_il[1][0] < 0.1
    assert finetune.metrics["class_il"]["forgetting"] > 0.45
    # Replay keeps most of the first task with only 200 stored images.
    assert replay.acc_class_il[1][0] > finetune.acc_class_il[1][0] + 0.3
    assert replay.metrics["class_il"]["forgetting"] < finetune.metrics["class_il"]["forgetting"] - 0.3
    assert replay.memory_size == 200
    # Both learn the new task; task-IL accuracy is never below class-IL accuracy.
    for r in (finetune, replay):
        assert r.acc_class_il[1][1] > 0.8
        assert np.all(np.array(r.acc_task_il[1]) >= np.array(r.acc_class_il[1]) - 1e-12)

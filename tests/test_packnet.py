"""PackNet (Mallya & Lazebnik 2018) on the shared loop, on a tiny synthetic stream.

Defining properties: earlier tasks' networks are bit-identical after later tasks
train (so their task-IL accuracy is exactly unchanged), each task prunes exactly
``prune_ratio`` of its free weights per layer by smallest magnitude, the per-task
masks are disjoint, and class-IL is undefined (None in the result).
"""
from __future__ import annotations

import math

import pytest
import torch

import strategies  # noqa: F401  (registration)
from core.config import ConfigError
from tests.helpers import tiny_loop_config as _cfg
from strategies.loop import make_strategy, run
from strategies.packnet import FREE, PackNet

RATIO = 0.6  # not the default, so the test would notice a hard-coded 0.75


@pytest.fixture(scope="module")
def traced_run(tiny_stream):
    """One run that records, after every task: task 0's raw scores on its val
    images, task 0's owned weights, and per prune the weights/owners before it."""
    cfg = _cfg()
    strategy = make_strategy("packnet", {"prune_ratio": RATIO, "lr": 0.1}, tiny_stream, cfg)
    assert isinstance(strategy, PackNet)
    trace = {"scores0": [], "owned0": [], "prunes": []}
    x0 = strategy.normalize(tiny_stream.tasks[0].val.x)
    original_prune = strategy.prune

    def traced_prune(index):
        before = {n: w.detach().clone() for n, w in strategy.prunable.items()}
        owners = {n: o.clone() for n, o in strategy.owner.items()}
        original_prune(index)
        after = {n: w.detach().clone() for n, w in strategy.prunable.items()}
        trace["prunes"].append((index, before, owners, after, {n: o.clone() for n, o in strategy.owner.items()}))

    strategy.prune = traced_prune

    def after_task(_result):
        trace["scores0"].append(strategy.scores(x0, task_id=0).clone())
        trace["owned0"].append({n: w.detach()[strategy.owner[n] == 1].clone() for n, w in strategy.prunable.items()})

    result = run(strategy, tiny_stream, cfg, callback=after_task, log=None)
    return strategy, result, trace


def test_runs_and_fills_the_task_il_matrix_only(traced_run, tiny_stream):
    strategy, result, _ = traced_run
    T = tiny_stream.num_tasks
    assert result.status == "completed" and result.task_incremental_only
    assert len(result.acc_task_il) == T
    for i, row in enumerate(result.acc_task_il):
        assert len(row) == T
        assert all(0.0 <= v <= 1.0 for v in row[: i + 1]) and all(v is None for v in row[i + 1:])
    # Each task is learned with its own subnetwork (chance is 0.5 per task).
    assert min(result.acc_task_il[-1]) >= 0.75
    saved = result.to_dict()
    assert all(v is None for row in saved["acc_class_il"] for v in row)
    assert saved["metrics"]["class_il"] is None
    assert saved["metrics"]["task_il"]["forgetting"] == 0.0
    # One head per task, with that task's classes.
    assert [h.out_features for h in strategy.model.heads] == tiny_stream.task_sizes()


def test_earlier_tasks_are_exactly_unchanged(traced_run):
    _, result, trace = traced_run
    R = result.acc_task_il
    for j in range(len(R)):
        for i in range(j, len(R)):
            assert R[i][j] == R[j][j]
    # Stronger than equal accuracy: task 0's logits and owned weights are
    # bit-identical after tasks 1 and 2 trained with momentum and weight decay.
    first = trace["scores0"][0]
    assert torch.isfinite(first[:, :2]).all()
    for later in trace["scores0"][1:]:
        assert torch.equal(later[:, :2], first[:, :2])
    for later in trace["owned0"][1:]:
        for n, w in later.items():
            assert torch.equal(w, trace["owned0"][0][n])


def test_scores_put_the_task_logits_in_its_columns(traced_run, tiny_stream):
    strategy, _, _ = traced_run
    task = tiny_stream.tasks[1]
    s = strategy.scores(strategy.normalize(task.val.x[:5]), task_id=1)
    assert s.shape == (5, tiny_stream.num_classes)
    lo, hi = task.label_offset, task.label_offset + task.num_classes
    assert torch.isfinite(s[:, lo:hi]).all()
    assert torch.isneginf(s[:, :lo]).all() and torch.isneginf(s[:, hi:]).all()
    with pytest.raises(ValueError):
        strategy.scores(strategy.normalize(task.val.x[:5]), task_id=None)


def test_prunes_prune_ratio_of_the_free_weights_by_magnitude(traced_run):
    strategy, _, trace = traced_run
    assert [p[0] for p in trace["prunes"]] == [0, 1, 2]
    for index, before, owners_before, after, owners_after in trace["prunes"]:
        for n in strategy.prunable:
            free = owners_before[n] == FREE
            n_free = int(free.sum())
            kept = owners_after[n] == index + 1
            pruned = free & ~kept
            # Within one weight per layer of rounding.
            assert abs(int(pruned.sum()) - RATIO * n_free) <= 0.5 + 1e-9
            assert strategy.prune_log[index][n] == (n_free, int(pruned.sum()))
            # Pruned weights are zero and released; nothing else changed owner.
            assert (after[n][pruned] == 0).all()
            assert (owners_after[n][pruned] == FREE).all()
            assert torch.equal(owners_after[n][~free], owners_before[n][~free])
            # Smallest magnitude: every pruned weight <= every kept one.
            if pruned.any() and kept.any():
                assert before[n][pruned].abs().max() <= before[n][kept].abs().min()
    report = strategy.extra_report()
    assert report["pruned_fraction_of_free"] == pytest.approx([RATIO] * 3, abs=1e-3)


def test_masks_are_disjoint_and_account_for_every_weight(traced_run):
    strategy, _, _ = traced_run
    for n, owner in strategy.owner.items():
        masks = [owner == k + 1 for k in range(3)] + [owner == FREE]
        total = torch.zeros_like(owner, dtype=torch.int64)
        for m in masks:
            total += m.long()
        assert (total == 1).all()  # every weight in exactly one mask
        # Weights nobody owns are zero (pruned at the last task, not yet reused).
        assert (strategy.prunable[n].detach()[owner == FREE] == 0).all()
    report = strategy.extra_report()
    r = RATIO
    expected = [(1 - r), r * (1 - r), r * r * (1 - r)]
    assert report["owned_fraction"] == pytest.approx(expected, abs=1e-3)
    assert report["free_fraction"] == pytest.approx(r ** 3, abs=1e-3)
    assert sum(report["owned_fraction"]) + report["free_fraction"] == pytest.approx(1.0)


def test_no_retraining_and_config_bounds(tiny_stream):
    cfg = _cfg(epochs=1)
    strategy = make_strategy("packnet", {"retrain_epochs": 0}, tiny_stream, cfg)
    result = run(strategy, tiny_stream, cfg, log=None)
    assert result.status == "completed"
    assert result.acc_task_il[-1][0] == result.acc_task_il[0][0]
    for bad in ({"prune_ratio": 0.0}, {"prune_ratio": 1.0}, {"retrain_epochs": -1}, {"prune": 0.5}):
        with pytest.raises(ConfigError):
            make_strategy("packnet", bad, tiny_stream, cfg)
    assert math.isclose(make_strategy("packnet", {}, tiny_stream, cfg).config.prune_ratio, 0.75)


def test_bn_statistics_are_recalibrated_after_pruning(tiny_stream):
    # Pruning 60-75 % of a from-scratch CNN's weights makes the BN running
    # averages collected during training wrong for the pruned network; with
    # crop augmentation and two short epochs they put task 0 at chance.
    cfg = _cfg(augment="crop")
    accs = {}
    for recal in (True, False):
        strategy = make_strategy("packnet", {"bn_recalibrate": recal}, tiny_stream, cfg)
        result = run(strategy, tiny_stream, cfg, log=None)
        accs[recal] = result.acc_task_il[-1][0]
        assert result.acc_task_il[-1][0] == result.acc_task_il[0][0]
    assert accs[True] >= 0.9 and accs[False] < accs[True]

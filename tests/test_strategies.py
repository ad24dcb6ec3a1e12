"""Strategies on the shared loop, on tiny synthetic streams (seconds, not minutes)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import strategies
from core.config import ConfigError
from tests.helpers import assert_lower_triangular, tiny_loop_config as _cfg
from strategies.loop import make_strategy, run
from strategies.memory import ClassMemory, herding_order, per_class_budget, update_balanced_memory
from strategies.networks import IncrementalNet, SimpleCNN, ResNet32

CLASS_IL = ["finetune", "joint", "replay", "icarl"]


def _run(method, stream, overrides=None, **loop_kw):
    cfg = _cfg(**loop_kw)
    strategy = make_strategy(method, overrides or {}, stream, cfg)
    return strategy, run(strategy, stream, cfg, log=None)


@pytest.mark.parametrize("method", CLASS_IL)
def test_each_strategy_fills_a_lower_triangular_matrix(method, tiny_stream):
    overrides = {"memory": 24} if method in ("replay", "icarl") else {}
    _, result = _run(method, tiny_stream, overrides)
    T = tiny_stream.num_tasks
    assert result.status == "completed"
    for matrix in (result.acc_class_il, result.acc_task_il):
        assert len(matrix) == T and all(len(row) == T for row in matrix)
        for i in range(T):
            for j in range(T):
                if j <= i:
                    assert 0.0 <= matrix[i][j] <= 1.0
                else:
                    assert matrix[i][j] is None
    assert result.eval_sizes == [len(t.val) for t in tiny_stream.tasks]
    assert set(result.metrics["class_il"]) == {"final_acc", "final_acc_pooled", "avg_inc_acc", "forgetting", "bwt", "plasticity"}
    # Task-IL never loses to class-IL: it chooses among fewer classes.
    for i in range(T):
        for j in range(i + 1):
            assert result.acc_task_il[i][j] >= result.acc_class_il[i][j] - 1e-12


@pytest.mark.parametrize("method", sorted(strategies.STRATEGIES))
def test_every_registered_strategy_runs_with_its_default_config(method, default_config_stream):
    """Every strategy as a user gets it (no override), on a stream big enough for
    every default memory: it completes and fills lower-triangular matrices."""
    strategy, result = _run(method, default_config_stream)
    assert_lower_triangular(result, default_config_stream.num_tasks)
    assert result.config == dataclasses.asdict(strategy.config_class())  # the defaults, untouched


def test_head_grows_with_each_task_and_keeps_old_weights(tiny_stream):
    net = IncrementalNet(SimpleCNN(3))
    net.add_classes(2)
    w_before = net.head.weight.detach().clone()
    net.add_classes(3)
    assert net.num_classes == 5 and net(torch.zeros(4, 3, 8, 8)).shape == (4, 5)
    assert torch.equal(net.head.weight[:2], w_before)
    strategy, _ = _run("finetune", tiny_stream, epochs=1)
    assert strategy.model.num_classes == tiny_stream.num_classes


def test_resnet32_has_the_cifar_shape():
    net = ResNet32(3)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 31  # 1 stem + 3 stages x 5 blocks x 2 convs; +1 fc = 32 layers
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 64)


def test_finetune_forgets_and_replay_remembers(tiny_stream):
    _, ft = _run("finetune", tiny_stream, epochs=3)
    _, rp = _run("replay", tiny_stream, {"memory": 36}, epochs=3)
    ft_old = np.mean(ft.acc_class_il[-1][:-1])
    rp_old = np.mean(rp.acc_class_il[-1][:-1])
    assert ft.metrics["class_il"]["forgetting"] > 0.5
    assert ft_old < 0.2  # old classes are overwritten by the new head
    assert rp_old > ft_old + 0.3
    assert rp.metrics["class_il"]["forgetting"] < ft.metrics["class_il"]["forgetting"]


def test_joint_is_the_upper_bound(tiny_stream):
    _, joint = _run("joint", tiny_stream, epochs=3)
    assert joint.metrics["class_il"]["final_acc"] > 0.8


@pytest.mark.parametrize("method", ["replay", "icarl"])
def test_memory_never_exceeds_its_size(method, tiny_stream):
    cfg = _cfg()
    strategy = make_strategy(method, {"memory": 25}, tiny_stream, cfg)
    sizes = []

    def after_task(_result):
        sizes.append(len(strategy.memory))
        counts = list(strategy.memory.counts().values())
        assert max(counts) - min(counts) <= 1  # balanced over seen classes

    run(strategy, tiny_stream, cfg, callback=after_task, log=None)
    assert sizes == [min(25, sum(len(t.train) for t in tiny_stream.tasks[:1])), 25, 25]
    assert all(s <= 25 for s in sizes)


def test_budget_split_is_exact_and_even():
    assert per_class_budget(200, 40) == [5] * 40
    b = per_class_budget(200, 43)
    assert sum(b) == 200 and max(b) - min(b) == 1
    assert per_class_budget(3, 5) == [1, 1, 1, 0, 0]


def test_herding_picks_the_points_that_track_the_mean():
    # Unit vectors at angles 0.3, -0.3, 0.05, 1.0, -1.0 rad. Their mean mu is
    # (0.798, 0.010) (x = (2cos.3 + cos.05 + 2cos1)/5, y = sin.05/5).
    # Pick 1: the sample nearest mu -> 0.05 (index 2).
    # Pick 2: (f2 + f)/2 nearest mu: pairing with -0.3 gives angle -0.125, with
    #   0.3 gives 0.175; mu's angle is 0.0125 -> -0.3 (index 1).
    # Pick 3: (f2 + f1 + f)/3: with 0.3 the distance is 0.172, with 1.0 it is
    #   0.19, with -1.0 0.37 -> 0.3 (index 0).
    # Pick 4: the running y-sum is sin(.05) = 0.05; adding -1.0 brings it to
    #   -0.198/4 of mu's side, adding 1.0 to +0.223 -> -1.0 (index 4), then 1.0.
    angles = torch.tensor([0.3, -0.3, 0.05, 1.0, -1.0])
    feats = torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    assert herding_order(feats, 5).tolist() == [2, 1, 0, 4, 3]
    assert herding_order(feats, 2).tolist() == [2, 1]  # a prefix: priority order
    # Scaling features does not change the picks (features are L2-normalised).
    assert herding_order(feats * torch.tensor([[3.0], [0.5], [2.0], [1.0], [7.0]]), 5).tolist() == [2, 1, 0, 4, 3]


def test_memory_shrinks_old_classes_keeping_priority_order():
    mem = ClassMemory()
    imgs = {c: torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1) + 10 * c for c in range(4)}
    first_n = lambda images, m: torch.arange(m)
    update_balanced_memory(mem, 8, [0, 1], imgs.__getitem__, first_n)
    assert mem.counts() == {0: 4, 1: 4}
    update_balanced_memory(mem, 8, [2, 3], imgs.__getitem__, first_n)
    assert mem.counts() == {0: 2, 1: 2, 2: 2, 3: 2}
    assert mem.class_images(0).flatten().tolist() == [0, 1]  # kept the first two picks


def test_icarl_nearest_mean_classifier_scores_every_seen_class(tiny_stream):
    strategy, result = _run("icarl", tiny_stream, {"memory": 24})
    assert strategy.class_means.shape[0] == tiny_stream.num_classes
    assert torch.allclose(strategy.class_means.norm(dim=1), torch.ones(tiny_stream.num_classes), atol=1e-5)
    assert result.metrics["class_il"]["final_acc"] > 0.5


def test_same_seed_same_matrix(tiny_stream):
    _, a = _run("replay", tiny_stream, {"memory": 24, "kd_weight": 1.0})
    _, b = _run("replay", tiny_stream, {"memory": 24, "kd_weight": 1.0})
    assert a.acc_class_il == b.acc_class_il


def test_bad_configs_are_one_line_errors(tiny_stream):
    with pytest.raises(ConfigError, match="unknown method"):
        make_strategy("icarll", {}, tiny_stream, _cfg())
    with pytest.raises(ConfigError, match="did you mean 'memory'"):
        make_strategy("replay", {"memroy": 10}, tiny_stream, _cfg())
    with pytest.raises(ConfigError, match="below its minimum"):
        make_strategy("replay", {"lr": 0}, tiny_stream, _cfg())
    with pytest.raises(ConfigError, match="larger than the stream"):
        make_strategy("replay", {"memory": 10**6}, tiny_stream, _cfg())


def test_diverging_loss_is_reported_not_raised(tiny_stream):
    cfg = _cfg()
    strategy = make_strategy("finetune", {}, tiny_stream, cfg)
    original = strategy.losses

    def losses_nan_in_task_2(x, y, logits):
        terms = original(x, y, logits)
        if len(strategy.tasks) == 2:  # inject a NaN loss while task 2 trains
            terms["ce"] = terms["ce"] * float("nan")
        return terms

    strategy.losses = losses_nan_in_task_2
    result = run(strategy, tiny_stream, cfg, log=None)
    assert result.status == "diverged"
    assert "task 1 epoch 0" in result.error
    assert len(result.acc_class_il) == 1  # the completed first task is kept
    assert result.metrics["class_il"]["final_acc"] == pytest.approx(result.acc_class_il[0][0])


def test_bf16_autocast_path_runs(tiny_stream):
    _, result = _run("icarl", tiny_stream, {"memory": 24}, precision="bf16", epochs=1)
    assert result.status == "completed"
    assert all(math.isfinite(v) for v in result.metrics["class_il"].values())

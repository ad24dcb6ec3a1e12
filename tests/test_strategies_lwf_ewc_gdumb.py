"""LwF, EWC and GDumb: each one's defining property, on tiny synthetic streams."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import strategies  # noqa: F401  (registers every strategy)
from datasets import build_stream, make_synthetic
from core.config import ConfigError
from strategies.gdumb import GreedyBalancedSampler
from tests.helpers import assert_lower_triangular, tiny_loop_config as _cfg
from strategies.loop import make_strategy, run
from strategies.networks import IncrementalNet, build_backbone


@pytest.fixture(scope="module")
def two_tasks():
    arrays = make_synthetic(num_classes=4, train_per_class=40, test_per_class=10, image_size=8, seed=1)
    return build_stream(arrays, num_tasks=2, val_fraction=0.2, seed=0)


def _run(method, stream, overrides=None, callback=None, **loop_kw):
    cfg = _cfg(**loop_kw)
    strategy = make_strategy(method, overrides or {}, stream, cfg)
    return strategy, run(strategy, stream, cfg, callback=callback, log=None)


def _params(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("method,overrides", [
    ("lwf", {}),
    ("ewc", {}),
    ("ewc", {"mode": "online", "gamma": 0.5}),
    ("gdumb", {"memory": 24, "passes": 2}),
])
def test_runs_on_the_shared_loop_and_fills_the_matrix(method, overrides, tiny_stream):
    strategy, result = _run(method, tiny_stream, overrides)
    assert_lower_triangular(result, tiny_stream.num_tasks)
    assert strategy.model.num_classes == tiny_stream.num_classes
    assert set(result.metrics["class_il"]) >= {"final_acc", "forgetting", "bwt"}


# ----------------------------------------------------------------------------- LwF

def test_lwf_with_zero_weight_is_exactly_finetune(tiny_stream):
    _, ft = _run("finetune", tiny_stream)
    lwf, lw = _run("lwf", tiny_stream, {"kd_weight": 0.0})
    assert lw.acc_class_il == ft.acc_class_il  # bit-identical, not approximately equal
    assert lw.acc_task_il == ft.acc_task_il
    assert not lwf.teacher.ready  # nothing distils, nothing is kept


def test_lwf_is_replay_with_no_memory(tiny_stream):
    """LwF is a preset of replay: the same code path with the memory fixed at 0,
    so replay with memory 0 and LwF's distillation settings trains the same weights."""
    lwf, lw = _run("lwf", tiny_stream)
    replay, rp = _run("replay", tiny_stream, {"memory": 0, "kd_weight": lwf.config.kd_weight,
                                              "temperature": lwf.config.temperature})
    assert lw.acc_class_il == rp.acc_class_il and lw.acc_task_il == rp.acc_task_il and lw.memory_size == 0
    assert all(torch.equal(v, replay.model.state_dict()[k]) for k, v in lwf.model.state_dict().items())
    with pytest.raises(ConfigError, match="unknown key 'memory'"):  # fixed, not a knob of LwF
        make_strategy("lwf", {"memory": 10}, tiny_stream, _cfg())


def test_lwf_teacher_is_a_frozen_snapshot_of_the_previous_model(two_tasks):
    cfg = _cfg()
    strategy = make_strategy("lwf", {"kd_weight": 1.0}, two_tasks, cfg)
    after_task1 = []
    checked = []
    original_end_task = strategy.end_task

    def end_task_spy(task):
        if len(strategy.tasks) == 2:  # task 2 has trained; the teacher is task 1's model
            teacher = strategy.teacher.model
            assert teacher is not None and teacher is not strategy.model and not teacher.training
            assert all(not p.requires_grad for p in teacher.parameters())
            assert teacher.num_classes == two_tasks.tasks[0].num_classes  # only old-class logits
            for k, v in _state(teacher).items():
                assert torch.equal(v, after_task1[0][k]), f"teacher {k} changed while task 2 trained"
            # ...while the student did move.
            assert any(not torch.equal(p, after_task1[0][k]) for k, p in _params(strategy.model).items()
                       if k in after_task1[0] and p.shape == after_task1[0][k].shape)
            checked.append(True)
        original_end_task(task)

    strategy.end_task = end_task_spy
    run(strategy, two_tasks, cfg, callback=lambda r: after_task1.append(_state(strategy.model)) if not after_task1 else None,
        log=None)
    assert checked == [True]


def test_lwf_distillation_keeps_the_old_model_outputs(tiny_stream):
    """LwF's defining property: the old classes' output distribution on OLD-task
    images stays close to the previous model's, although LwF never sees those
    images again (it distils on the new task's images only). Fine-tuning drifts
    further; a no-op distillation would give exactly fine-tuning's numbers."""
    loop = dict(epochs=3, lr=0.01)
    snapshots = {"finetune": [], "lwf": []}

    def collect(name, strategy):
        return lambda _r: snapshots[name].append(copy.deepcopy(strategy.model).eval())

    def run_one(method, overrides):
        cfg = _cfg(epochs=loop["epochs"])
        s = make_strategy(method, {"lr": loop["lr"], **overrides}, tiny_stream, cfg)
        return s, run(s, tiny_stream, cfg, callback=collect(method, s), log=None)

    s_ft, ft = run_one("finetune", {})
    s_lwf, lw = run_one("lwf", {"kd_weight": 3.0})
    # Task 1 is trained identically (no teacher yet).
    assert ft.acc_class_il[0] == lw.acc_class_il[0]
    x_old = s_ft.normalize(tiny_stream.tasks[0].val.x)

    def drift(name):
        with torch.no_grad():
            teacher = snapshots[name][0](x_old)
            student = snapshots[name][-1](x_old)[:, : teacher.shape[1]]
        return F.kl_div(F.log_softmax(student, 1), F.softmax(teacher, 1), reduction="batchmean").item()

    drift_ft, drift_lwf = drift("finetune"), drift("lwf")
    assert drift_ft > 0
    assert drift_lwf < 0.5 * drift_ft, (drift_lwf, drift_ft)
    # And it does not lose old-class accuracy against fine-tuning.
    assert np.mean(lw.acc_class_il[-1][:-1]) >= np.mean(ft.acc_class_il[-1][:-1])
    assert np.mean(lw.acc_task_il[-1][:-1]) >= np.mean(ft.acc_task_il[-1][:-1])


def test_lwf_config_bounds(tiny_stream):
    with pytest.raises(ConfigError, match="below its minimum"):
        make_strategy("lwf", {"kd_weight": -1}, tiny_stream, _cfg())
    with pytest.raises(ConfigError, match="below its minimum"):
        make_strategy("lwf", {"temperature": 0}, tiny_stream, _cfg())


# ----------------------------------------------------------------------------- EWC

def _ewc_after_first_task(stream, overrides=None, **loop_kw):
    """An EWC strategy trained on task 1 only (its anchor and Fisher are set)."""
    first = dataclasses.replace(stream, tasks=stream.tasks[:1])
    strategy, _ = _run("ewc", first, overrides, **loop_kw)
    return strategy


def test_ewc_penalty_is_zero_at_the_anchor_and_quadratic_around_it(two_tasks):
    s = _ewc_after_first_task(two_tasks, {"ewc_lambda": 100.0})
    assert len(s.anchors) == 1
    assert s.penalty().item() == 0.0  # exactly, not approximately
    anchor = s.anchors[0]
    gen = torch.Generator().manual_seed(3)
    direction = {k: torch.randn(f.shape, generator=gen) for k, f in anchor.fisher.items()}
    params = dict(s.model.named_parameters())

    def penalty_at(scale):
        with torch.no_grad():
            for k, d in direction.items():
                params[k].copy_(anchor.params[k] + scale * d)
        return s.penalty().item()

    delta = 1e-2
    p1, p2 = penalty_at(delta), penalty_at(2 * delta)
    assert p1 > 0
    assert p2 / p1 == pytest.approx(4.0, rel=1e-4)
    by_hand = 0.5 * 100.0 * sum((anchor.fisher[k] * (delta * d) ** 2).sum().item() for k, d in direction.items())
    assert p1 == pytest.approx(by_hand, rel=1e-4)
    # The head grows: the new classes' rows have no anchor and are free.
    penalty_at(delta)
    s.model.add_classes(2)
    with torch.no_grad():
        s.model.head.weight[2:] += 5.0
    assert s.penalty().item() == pytest.approx(p1, rel=1e-6)


def test_ewc_fisher_is_the_mean_squared_per_sample_gradient_of_the_true_label(two_tasks):
    s = _ewc_after_first_task(two_tasks, {"fisher_samples": 10_000}, epochs=1)
    task = two_tasks.tasks[0]
    fisher = s.fisher_diagonal(task)
    expected = {k: torch.zeros_like(v) for k, v in fisher.items()}
    params = dict(s.model.named_parameters())
    s.model.eval()
    for i in range(len(task.train)):  # the definition, one sample at a time
        s.model.zero_grad()
        loss = F.cross_entropy(s.model(s.normalize(task.train.x[i:i + 1])), task.train.y[i:i + 1])  # -log p(y_true|x)
        loss.backward()
        for k in expected:
            expected[k] += params[k].grad.pow(2)
    assert set(fisher) == {k for k, _ in s.model.named_parameters()}  # backbone + (old) head rows
    for k in fisher:
        torch.testing.assert_close(fisher[k], expected[k] / len(task.train), rtol=1e-4, atol=1e-12)
    assert sum(f.sum() for f in fisher.values()) > 0


def test_ewc_fisher_uses_at_most_fisher_samples_images(two_tasks):
    s = _ewc_after_first_task(two_tasks, {"fisher_samples": 7}, epochs=1)
    seen = []
    normalize = s.normalize
    s.normalize = lambda x: (seen.append(len(x)), normalize(x))[1]
    s.fisher_diagonal(two_tasks.tasks[0])
    assert sum(seen) == 7
    s_head = _ewc_after_first_task(two_tasks, {"penalize_head": False}, epochs=1)
    assert all(not k.startswith("head.") for k in s_head.anchors[0].fisher)


def test_ewc_penalty_is_positive_after_training_task_2_and_in_the_loss(two_tasks):
    cfg = _cfg()
    s = make_strategy("ewc", {}, two_tasks, cfg)
    penalties = []
    original_end_task = s.end_task

    def end_task_spy(task):
        if len(s.tasks) == 2:
            penalties.append(s.penalty().item())
            x, y = two_tasks.tasks[1].train.x[:8], two_tasks.tasks[1].train.y[:8]
            xn = s.normalize(x)
            terms = s.losses(xn, y, s.model(xn))
            assert set(terms) == {"ce", "ewc"} and terms["ewc"].item() == pytest.approx(penalties[0])
        original_end_task(task)

    s.end_task = end_task_spy
    result = run(s, two_tasks, cfg, log=None)
    assert result.status == "completed" and penalties[0] > 0
    assert len(s.anchors) == 1  # no Fisher after the stream's last task
    assert result.extra["ewc_anchors"] == 1 and result.extra["fisher_mean"] > 0


def test_ewc_huge_lambda_pins_the_backbone_along_its_important_directions(two_tasks):
    """Task 2's backbone displacement, measured in the metric EWC penalises
    (sum_i F_i (theta_i - theta*_i)^2), with a huge lambda vs lambda = 0.

    lambda is set after task 1 (task 1's training does not depend on it, so both
    runs share the same anchor and Fisher) to 2 / (lr * max F): as large as plain
    SGD with momentum stays stable for the stiffest parameter (lr * lambda * F <
    2 (1 + momentum)). Parameters with F ~ 0 are free by design, so the plain L2
    displacement only shrinks a little; the Fisher-weighted one collapses.
    """
    lr = 0.01
    outcomes = []
    for huge in (False, True):
        cfg = _cfg(epochs=3, batch_size=8)
        s = make_strategy("ewc", {"ewc_lambda": 0.0, "lr": lr, "penalize_head": False}, two_tasks, cfg)
        snaps = []

        def after_task(_r, s=s, snaps=snaps, huge=huge):
            snaps.append(_params(s.model))
            if len(snaps) == 1 and huge:
                fmax = max(f.max().item() for f in s.anchors[0].fisher.values())
                s.config.ewc_lambda = 2.0 / (lr * fmax)

        result = run(s, two_tasks, cfg, callback=after_task, log=None)
        assert result.status == "completed"
        anchor = s.anchors[0]
        fisher_weighted = sum((anchor.fisher[k] * (snaps[1][k] - anchor.params[k]) ** 2).sum().item() for k in anchor.fisher)
        plain = sum(((snaps[1][k] - anchor.params[k]) ** 2).sum().item() for k in anchor.fisher) ** 0.5
        outcomes.append((fisher_weighted, plain, s.config.ewc_lambda))
    (free_fw, free_l2, _), (pinned_fw, pinned_l2, lam) = outcomes
    assert lam > 1e3  # it is a huge lambda
    assert pinned_fw < 0.25 * free_fw, (pinned_fw, free_fw)
    assert pinned_l2 < free_l2


def test_ewc_modes_separate_keeps_one_anchor_per_task_online_keeps_one(tiny_stream):
    sep, _ = _run("ewc", tiny_stream, {"mode": "separate"})
    assert len(sep.anchors) == 2  # tasks 1 and 2 (none after the last)
    assert sep.anchors[0].fisher["head.weight"].shape[0] == 2 and sep.anchors[1].fisher["head.weight"].shape[0] == 4

    cfg = _cfg()
    onl = make_strategy("ewc", {"mode": "online", "gamma": 0.5}, tiny_stream, cfg)
    computed = []
    original = onl.fisher_diagonal
    onl.fisher_diagonal = lambda task: computed.append(original(task)) or computed[-1]
    anchors_after = []
    run(onl, tiny_stream, cfg, callback=lambda _r: anchors_after.append(len(onl.anchors)), log=None)
    assert anchors_after == [1, 1, 1]
    merged = onl.anchors[0].fisher
    f1, f2 = computed
    for k in merged:  # F = gamma * F_old + F_new, old head rows only where they exist
        expected = f2[k].clone()
        expected[: f1[k].shape[0]] += 0.5 * f1[k]
        torch.testing.assert_close(merged[k], expected)
    # The single anchor is the latest model (after task 2).
    assert merged["head.weight"].shape[0] == 4


# ----------------------------------------------------------------------------- GDumb

def test_greedy_sampler_follows_algorithm_1_on_a_hand_made_sequence():
    s = GreedyBalancedSampler(4, torch.Generator().manual_seed(0))
    labels = ["a", "a", "a", "a", "b", "b", "b", "c", "c", "c"]
    stored = [s.offer(i, y) for i, y in enumerate(labels)]
    # 0-3 fill the room; 4, 5 (b below k/|Y| = 2) evict random a's; 6 is refused
    # (b has its share); 7, 8 (c below 4/3) evict from the largest class; 9 refused.
    assert stored == [True, True, True, True, True, True, False, True, True, False]
    assert s.counts() == {"a": 1, "b": 1, "c": 2} and len(s) == 4
    assert s.slots["c"] == [7, 8] and s.slots["b"][0] in (4, 5) and s.slots["a"][0] in (0, 1, 2, 3)
    assert s.offer(10, "a") and s.counts() == {"a": 2, "b": 1, "c": 1}  # evicted from c, the largest

    # The share is k / |Y| (Alg. 1), not "below the largest class": with k = 10 and
    # counts a 5, b 4, c 1, a b sample is refused (4 >= 10/3) although a has 5.
    s = GreedyBalancedSampler(10, torch.Generator().manual_seed(0))
    for i in range(6):
        s.offer(("a", i), "a")
    for i in range(4):
        s.offer(("b", i), "b")
    assert s.offer(("c", 0), "c") and s.counts() == {"a": 5, "b": 4, "c": 1}
    assert not s.offer(("b", 9), "b") and s.counts() == {"a": 5, "b": 4, "c": 1}
    # Same generator seed, same memory.
    def fill(seed):
        g = GreedyBalancedSampler(5, torch.Generator().manual_seed(seed))
        for i in range(40):
            g.offer(i, i % 3)
        return g.slots
    assert fill(1) == fill(1)
    with pytest.raises(ValueError):
        GreedyBalancedSampler(0, torch.Generator())


def test_gdumb_memory_is_class_balanced_and_within_budget(tiny_stream):
    cfg = _cfg(epochs=1)
    s = make_strategy("gdumb", {"memory": 25, "passes": 1}, tiny_stream, cfg)
    snapshots = []
    run(s, tiny_stream, cfg, callback=lambda _r: snapshots.append((s.memory.counts(), s.memory_size())), log=None)
    for t, (counts, size) in enumerate(snapshots):
        seen = sum(task.num_classes for task in tiny_stream.tasks[: t + 1])
        assert sorted(counts) == list(range(seen))
        assert max(counts.values()) - min(counts.values()) <= 1
        assert size == sum(counts.values()) == 25  # every class has >= 25 / seen images
    # Stored images are real training images of their class.
    for label in range(tiny_stream.num_classes):
        task = next(t for t in tiny_stream.tasks if label in t.labels)
        pool = task.train.x[task.train.y == label].flatten(1)
        for img in s.memory.class_images(label).flatten(1):
            assert (pool == img).all(1).any()


def test_gdumb_trains_only_on_the_memory(tiny_stream):
    s, result = _run("gdumb", tiny_stream, {"memory": 24, "passes": 3}, epochs=2, batch_size=8)
    x, y = s.training_data(tiny_stream.tasks[-1])
    assert len(x) == 24 and sorted(set(y.tolist())) == list(range(tiny_stream.num_classes))
    # 24 memory images = 3 full batches of 8, per pass, per epoch -- nothing else.
    assert [t["images_trained"] for t in result.timings] == [2 * 3 * 24] * tiny_stream.num_tasks
    assert result.memory_size == 24
    assert result.metrics["class_il"]["final_acc"] > 0.5  # learns all classes from 4 images each


def test_gdumb_reinitialises_the_model_every_task(tiny_stream):
    cfg = _cfg(epochs=1, seed=5)
    s = make_strategy("gdumb", {"memory": 24, "passes": 1}, tiny_stream, cfg)
    after_begin, after_task = [], []
    original_begin = s.begin_task

    def begin_spy(task, epochs, batch_size):
        original_begin(task, epochs, batch_size)
        after_begin.append(_state(s.model))
        assert s.optimizer.param_groups[0]["params"][0] is next(s.model.parameters())  # a new optimiser

    s.begin_task = begin_spy
    run(s, tiny_stream, cfg, callback=lambda _r: after_task.append(_state(s.model)), log=None)
    for t in range(tiny_stream.num_tasks):
        torch.manual_seed(5)
        fresh = IncrementalNet(build_backbone("simplecnn", 3))
        fresh.add_classes(sum(task.num_classes for task in tiny_stream.tasks[: t + 1]))
        fresh_state = fresh.state_dict()
        assert after_begin[t].keys() == fresh_state.keys()
        for k, v in after_begin[t].items():
            assert torch.equal(v, fresh_state[k]), f"task {t + 1}: {k} is not the fresh seeded init"
        if t > 0:  # and it is not what task t trained
            assert any(not torch.equal(v, after_task[t - 1][k]) for k, v in after_begin[t].items()
                       if v.shape == after_task[t - 1][k].shape and v.is_floating_point())


def test_gdumb_memory_must_be_positive(tiny_stream):
    with pytest.raises(ConfigError, match="below its minimum"):
        make_strategy("gdumb", {"memory": 0}, tiny_stream, _cfg())
    with pytest.raises(ConfigError, match="did you mean 'memory'"):
        make_strategy("gdumb", {"memroy": 10}, tiny_stream, _cfg())

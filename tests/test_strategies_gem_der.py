"""GEM (Lopez-Paz & Ranzato 2017) and DER (Yan et al. 2021): defining properties on tiny streams."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import quadprog
import torch
import torch.nn.functional as F
from scipy.optimize import minimize

import strategies  # noqa: F401  (registration)
import strategies.gem as gem_module
from core.config import ConfigError
from strategies.der import DERNet
from strategies.gem import project_gradient
from tests.helpers import assert_lower_triangular, tiny_loop_config as _cfg
from strategies.loop import make_strategy, run, start_phase, train_phase, train_task


def _begin_task(strategy, task, epochs=1, batch_size=32):
    """``begin_task`` and the start of the main phase (its optimiser), for tests
    that then call ``train_step`` by hand."""
    strategy.begin_task(task, epochs, batch_size)
    start_phase(strategy, strategy.phases(task, _cfg(epochs=epochs, batch_size=batch_size))[0], batch_size)


def _finish_task(strategy, task, epochs=1, batch_size=32, seed=0):
    """After ``begin_task``: every phase of the task through the loop, then ``end_task``."""
    train_task(strategy, task, _cfg(epochs=epochs, batch_size=batch_size), torch.Generator().manual_seed(seed), {})
    strategy.end_task(task)


def _train_task(strategy, task, epochs=1, batch_size=32, seed=0):
    """The loop's per-task sequence without evaluation (augmentation off)."""
    strategy.begin_task(task, epochs, batch_size)
    _finish_task(strategy, task, epochs, batch_size, seed)


# ----------------------------------------------------------------------------- GEM
def _random_problem(rng, t, d):
    G = rng.standard_normal((t, d))
    g = rng.standard_normal(d)
    if np.all(G @ g >= 0):  # make sure at least one constraint is violated
        G[0] = -G[0]
    return torch.from_numpy(g), torch.from_numpy(G)


def _slsqp_projection(target, G, bound):
    """Independent solver: min_z 1/2||z - target||^2 s.t. G z >= bound (primal)."""
    cons = {"type": "ineq", "fun": lambda z: G @ z - bound, "jac": lambda z: G}
    res = minimize(lambda z: 0.5 * np.sum((z - target) ** 2), target, jac=lambda z: z - target,
                   constraints=[cons], method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
    assert res.success, res.message
    return res.x


@pytest.mark.parametrize("margin_type", ["primal", "dual"])
@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_projection_equals_the_independent_primal_optimum(margin_type, margin):
    rng = np.random.default_rng(0)
    for trial in range(12):
        t, d = [(1, 10), (2, 12), (3, 20), (4, 30)][trial % 4]
        g, G = _random_problem(rng, t, d)
        Gn, gn = G.numpy(), g.numpy()
        z = project_gradient(g, G, margin, margin_type)
        assert z.dtype == torch.float64
        if margin_type == "primal":
            # G g~ >= margin, the closest such vector to g.
            expected = _slsqp_projection(gn, Gn, margin)
            bound = margin
        else:
            # Dual bound v >= margin  <=>  projection of g + margin * sum_k g_k onto G z >= 0.
            expected = _slsqp_projection(gn + margin * Gn.sum(0), Gn, 0.0)
            bound = 0.0
        scale = np.linalg.norm(gn) + margin * np.linalg.norm(Gn.sum(0)) + 1.0
        np.testing.assert_allclose(z.numpy(), expected, atol=1e-5 * scale)
        dots = Gn @ z.numpy()
        assert np.all(dots >= bound - 1e-6 * scale * np.linalg.norm(Gn, axis=1).max())


def test_dual_margin_is_the_reference_code_qp():
    """margin_type='dual' solves exactly the reference project2cone2 dual:
    min 1/2 v'(GG')v + (Gg)'v s.t. v >= margin, g~ = G'v + g."""
    rng = np.random.default_rng(1)
    for _ in range(5):
        g, G = _random_problem(rng, 3, 15)
        Gn, gn = G.numpy(), g.numpy()
        P = Gn @ Gn.T + 1e-10 * np.eye(3)
        v = quadprog.solve_qp(P, -(Gn @ gn), np.eye(3), np.full(3, 0.5))[0]
        np.testing.assert_allclose(project_gradient(g, G, 0.5, "dual").numpy(), Gn.T @ v + gn, atol=1e-6)


def test_feasible_gradient_is_not_moved_without_margin():
    rng = np.random.default_rng(2)
    G = torch.from_numpy(rng.standard_normal((3, 10)))
    g = G.sum(0) * 3 + 0.01 * torch.from_numpy(rng.standard_normal(10))
    assert torch.all(G @ g >= 0)
    torch.testing.assert_close(project_gradient(g, G, 0.0, "primal"), g)
    torch.testing.assert_close(project_gradient(g, G, 0.0, "dual"), g)


def _flat_grads(params):
    return torch.cat([p.grad.reshape(-1) for p in params])


def _independent_gradient(model, x, y, num_seen):
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x)[:, :num_seen], y).backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.requires_grad]).double()


@pytest.mark.parametrize("margin_type", ["dual", "primal"])
def test_gem_projects_inside_a_real_training_step(tiny_stream, margin_type, monkeypatch):
    """Capture a real step of task 2: g and the past-task gradients recomputed
    independently on a copy of the model; the applied gradient is their projection
    and satisfies the margin against every past task."""
    overrides = {"memory": 24, "memory_batch": 10_000, "memory_strength": 0.5, "margin_type": margin_type,
                 "weight_decay": 0.0, "lr": 0.2}
    strategy = make_strategy("gem", overrides, tiny_stream, _cfg())
    calls = []
    real = gem_module.project_gradient
    monkeypatch.setattr(gem_module, "project_gradient", lambda *a, **k: calls.append(a) or real(*a, **k))
    tasks = tiny_stream.tasks
    _train_task(strategy, tasks[0], epochs=2)
    _train_task(strategy, tasks[1], epochs=1)
    task = tasks[2]
    _begin_task(strategy, task)
    gen = torch.Generator().manual_seed(3)
    checked = 0
    calls.clear()
    constrained_before = strategy.constrained_steps
    projected_before = strategy.projected_steps
    for step in range(8):
        idx = torch.randperm(len(task.train), generator=gen)[:32]
        x, y = strategy.normalize(task.train.x[idx]), task.train.y[idx]
        twin = copy.deepcopy(strategy.model).train()
        n_calls = len(calls)
        strategy.train_step(x, y)
        params = strategy.trainable_parameters()
        applied = _flat_grads(params).double()
        # Independent g and G (whole task memories, as memory_batch exceeds them).
        g = _independent_gradient(twin, x, y, strategy.num_seen)
        G = torch.stack([_independent_gradient(twin, strategy.normalize(mx), my, strategy.num_seen)
                         for mx, my, _ in strategy._task_memory[:2]])
        scale = G.norm(dim=1).max() * max(g.norm(), applied.norm())
        violated = bool((G @ g < 0).any())
        assert (len(calls) > n_calls) == violated  # project exactly when some <g, g_k> < 0
        if not violated:
            torch.testing.assert_close(applied, g, rtol=1e-4, atol=1e-6 * g.norm().item())
            continue
        expected = real(g, G, 0.5, margin_type)
        torch.testing.assert_close(applied, expected, rtol=1e-3, atol=1e-4 * expected.norm().item())
        bound = 0.5 if margin_type == "primal" else 0.0
        assert torch.all(G @ applied >= bound - 1e-3 * scale), (G @ applied, bound)
        checked += 1
    assert checked >= 2, "no projected step to check"
    assert strategy.projected_steps - projected_before == len(calls)
    assert strategy.constrained_steps - constrained_before == 8


def test_gem_leaves_a_non_conflicting_gradient_alone(tiny_stream, monkeypatch):
    strategy = make_strategy("gem", {"memory": 24, "memory_batch": 10_000}, tiny_stream, _cfg())
    _train_task(strategy, tiny_stream.tasks[0], epochs=1)
    _begin_task(strategy, tiny_stream.tasks[1])
    monkeypatch.setattr(gem_module, "project_gradient", lambda *a, **k: pytest.fail("projected a feasible gradient"))
    params = strategy.trainable_parameters()
    strategy.model.train()
    mx, my, labels = strategy._task_memory[0]
    # The current gradient := the memory gradient itself, so <g, g_0> = |g_0|^2 >= 0.
    g0 = strategy._memory_gradient(params, mx, my, labels)
    before = [p.grad.clone() for p in params]
    strategy.before_optimizer_step()
    for p, b in zip(params, before):
        assert torch.equal(p.grad, b)
    assert strategy.constrained_steps == 1 and strategy.projected_steps == 0
    assert g0.norm() > 0


def test_gem_runs_three_tasks_with_a_per_task_memory(tiny_stream):
    cfg = _cfg()
    strategy = make_strategy("gem", {"memory": 24}, tiny_stream, cfg)
    per_task = []
    result = run(strategy, tiny_stream, cfg, log=None,
                 callback=lambda r: per_task.append([len(m[0]) for m in strategy._task_memory]))
    assert_lower_triangular(result, tiny_stream.num_tasks)
    assert per_task == [[24], [12, 12], [8, 8, 8]]  # total budget split evenly over tasks
    assert result.memory_size == 24
    assert result.extra["constrained_steps"] > 0
    with pytest.raises(ConfigError):
        make_strategy("gem", {"memory": 3}, tiny_stream, cfg)  # < 2 images per past task


# ----------------------------------------------------------------------------- DER
def test_der_freezes_old_extractors_bit_for_bit_and_grows(tiny_stream):
    cfg = _cfg(epochs=1)
    strategy = make_strategy("der", {}, tiny_stream, cfg)
    snapshots, params, extras = [], [], []

    def after_task(result):
        snapshots.append([{k: v.clone() for k, v in e.state_dict().items()} for e in strategy.model.extractors])
        params.append(result.num_params)
        extras.append(result.extra)

    result = run(strategy, tiny_stream, cfg, log=None, callback=after_task)
    T = tiny_stream.num_tasks
    assert_lower_triangular(result, T)
    for t in range(T):
        assert extras[t]["extractors"] == t + 1 == len(snapshots[t])
        assert params[t] == sum(extras[t]["params_per_task"]) + extras[t]["classifier_params"]
        if t > 0:
            assert params[t] - params[t - 1] >= extras[t]["params_per_task"][-1]
    # Every extractor's parameters AND BatchNorm buffers (running mean/var, counts)
    # are bit-identical after later tasks trained.
    for k in range(T):
        assert any("running_mean" in name for name in snapshots[k][k])
        for later in range(k + 1, T):
            for name, value in snapshots[k][k].items():
                assert torch.equal(value, snapshots[later][k][name]), (k, later, name)
    assert result.extra["feature_dim"] == T * strategy.model.extractors[0].out_dim


def test_der_old_extractors_stay_in_eval_mode_and_the_new_one_trains(tiny_stream):
    strategy = make_strategy("der", {}, tiny_stream, _cfg())
    _train_task(strategy, tiny_stream.tasks[0])
    old_state = {k: v.clone() for k, v in strategy.model.extractors[0].state_dict().items()}
    task = tiny_stream.tasks[1]
    _begin_task(strategy, task)
    new_state = {k: v.clone() for k, v in strategy.model.extractors[1].state_dict().items()}
    strategy.model.train()
    assert not strategy.model.extractors[0].training and strategy.model.extractors[1].training
    assert all(not p.requires_grad for p in strategy.model.extractors[0].parameters())
    trainable = {id(p) for p in strategy.trainable_parameters()}
    assert not trainable & {id(p) for p in strategy.model.extractors[0].parameters()}
    for xb, yb in strategy.train_batches(task, 32, torch.Generator().manual_seed(0)):
        strategy.train_step(strategy.normalize(xb), yb)
    for k, v in strategy.model.extractors[0].state_dict().items():
        assert torch.equal(v, old_state[k]), k
    # The new extractor did learn (weights) and its BN statistics moved.
    changed = [k for k, v in strategy.model.extractors[1].state_dict().items() if not torch.equal(v, new_state[k])]
    assert any("running_mean" in k for k in changed) and any(k.endswith("weight") for k in changed)


def test_der_aux_head_has_new_classes_plus_one_outputs(tiny_stream):
    strategy = make_strategy("der", {}, tiny_stream, _cfg())
    t0, t1 = tiny_stream.tasks[:2]
    strategy.begin_task(t0, 1, 32)
    assert strategy.model.aux_head is None  # no old class in the first task
    _finish_task(strategy, t0)
    strategy.begin_task(t1, 1, 32)
    aux = strategy.model.aux_head
    assert aux.out_features == t1.num_classes + 1
    assert aux.in_features == strategy.model.extractors[-1].out_dim
    assert strategy.model.head.out_features == t0.num_classes + t1.num_classes
    assert strategy.model.head.in_features == 2 * strategy.model.extractors[0].out_dim
    assert {id(p) for p in aux.parameters()} <= {id(p) for p in strategy.trainable_parameters()}
    # Aux targets: old classes -> 0, new class c -> c - offset + 1.
    x = torch.cat([strategy.memory.data()[0][:3], t1.train.x[:5]])
    y = torch.cat([strategy.memory.data()[1][:3], t1.train.y[:5]])
    strategy.model.train()
    logits = strategy.model(strategy.normalize(x))
    aux_logits = strategy.model.last_aux_logits.detach().clone()
    terms = strategy.losses(x, y, logits)
    aux_y = torch.where(y >= t1.label_offset, y - t1.label_offset + 1, 0)
    assert aux_y[:3].tolist() == [0, 0, 0] and set(aux_y[3:].tolist()) <= {1, 2}
    torch.testing.assert_close(terms["aux"], F.cross_entropy(aux_logits, aux_y))
    _finish_task(strategy, t1)
    assert strategy.model.aux_head is None  # discarded after the task


class _TinyExtractor(torch.nn.Module):
    out_dim = 4

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(12, 4)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_der_copies_old_classifier_weights_into_the_grown_head():
    net = DERNet()
    net.expand(_TinyExtractor(), 2, with_aux=False)
    w, b = net.head.weight.detach().clone(), net.head.bias.detach().clone()
    net.expand(_TinyExtractor(), 3, with_aux=True)
    assert net.head.weight.shape == (5, 8) and net.aux_head.out_features == 4
    assert torch.equal(net.head.weight[:2, :4], w) and torch.equal(net.head.bias[:2], b)
    assert net(torch.zeros(2, 3, 2, 2)).shape == (2, 5)
    assert all(not p.requires_grad for p in net.extractors[0].parameters())


@pytest.mark.parametrize("per_class,expected_mem", [(10, 16), (3, 6)])
def test_der_batches_are_balanced_new_vs_memory(tiny_stream, per_class, expected_mem):
    strategy = make_strategy("der", {"memory_per_class": per_class}, tiny_stream, _cfg())
    _train_task(strategy, tiny_stream.tasks[0])
    assert len(strategy.memory) == per_class * tiny_stream.tasks[0].num_classes
    task = tiny_stream.tasks[1]
    batches = list(strategy.train_batches(task, 32, torch.Generator().manual_seed(0)))
    assert len(batches) == strategy.num_train_batches(task, 32)
    seen_new = 0
    for i, (xb, yb) in enumerate(batches):
        n_mem = int((yb < task.label_offset).sum())
        n_new = len(yb) - n_mem
        seen_new += n_new
        if i < len(batches) - 1:
            assert (n_mem, n_new) == (expected_mem, 32 - expected_mem)
        else:
            assert n_mem == min(expected_mem, n_new)
    assert seen_new == len(task.train)  # one epoch = one pass over the new task


def test_der_rebalancing_trains_only_the_classifier_on_balanced_classes(tiny_stream, monkeypatch):
    strategy = make_strategy("der", {"balance_epochs": 2}, tiny_stream, _cfg())
    _train_task(strategy, tiny_stream.tasks[0])
    task = tiny_stream.tasks[1]
    _begin_task(strategy, task)
    for xb, yb in strategy.train_batches(task, 32, torch.Generator().manual_seed(0)):
        strategy.train_step(strategy.normalize(xb), yb)
    before = copy.deepcopy(strategy.model.state_dict())
    labels = []
    real_step = strategy.train_step
    monkeypatch.setattr(strategy, "train_step", lambda x, y: labels.append(y.clone()) or real_step(x, y))
    cfg = _cfg(epochs=1)
    main, balance = strategy.phases(task, cfg)
    assert (balance.name, balance.epochs, balance.augment) == ("balance", 2, False)
    record = train_phase(strategy, balance, cfg, torch.Generator().manual_seed(0), task.task_id)
    strategy.end_task(task)
    counts = torch.bincount(torch.cat(labels), minlength=strategy.num_seen)
    assert counts.tolist() == [2 * 10] * strategy.num_seen  # 2 epochs x 10 per class, all classes
    assert record["images"] == 2 * 10 * strategy.num_seen
    after = strategy.model.state_dict()
    for k, v in after.items():
        if k.startswith("extractors."):
            assert torch.equal(v, before[k]), k
    assert not torch.equal(after["head.weight"], before["head.weight"])


def test_der_fixed_total_memory_mode(tiny_stream):
    cfg = _cfg(epochs=1)
    strategy = make_strategy("der", {"memory_per_class": 0, "memory": 24, "balance_reinit": True,
                                     "init_from_previous": True}, tiny_stream, cfg)
    sizes = []
    result = run(strategy, tiny_stream, cfg, log=None, callback=lambda r: sizes.append(r.memory_size))
    assert_lower_triangular(result, tiny_stream.num_tasks)
    assert sizes == [24, 24, 24]

"""Training phases run by the one loop (strategies/phases.py, strategies/loop.py).

Every phase -- the main training and the side phases (DER's classifier
re-balancing, Yan et al. 2021 §3.3; PackNet's post-pruning retraining, Mallya &
Lazebnik 2018 §3) -- goes through the same loop code: a diverged side phase
ends the run as "diverged" naming the phase, its seconds and images are in the
task's timing, its augmentation setting is honoured, and its optimiser comes
from ``Strategy.make_optimizer`` with the phase's learning rate, parameters and
schedule (the only optimiser constructor in strategies/).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import strategies  # noqa: F401  (registration)
from strategies.base import Strategy, count_batches, shuffled_batches
from strategies.loop import make_strategy, run, train_phase
from strategies.phases import Phase
from tests.helpers import tiny_loop_config as _cfg

ROOT = Path(__file__).resolve().parent.parent


class _Recorder(Strategy):
    """Finetuning plus a second phase ``"side"`` over the same task data; records
    the uint8 batches each phase yields, what ``train_step`` receives, and the
    optimiser it steps with. Not registered: built directly from a real
    strategy's config and context."""

    name = "recorder"

    def __init__(self, config, ctx, side_augment: bool, side_generator: torch.Generator | None = None) -> None:
        super().__init__(config, ctx)
        self.side_augment = side_augment
        self.side_generator = side_generator
        self.current = ""
        self.yielded: dict[str, list[torch.Tensor]] = {"train": [], "side": []}
        self.received: dict[str, list[torch.Tensor]] = {"train": [], "side": []}
        self.optimizers: dict[str, list[tuple]] = {"train": [], "side": []}
        self.side_params: list[torch.nn.Parameter] = []

    def _recording(self, batches, name):
        def gen(batch_size, generator):
            for xb, yb in batches(batch_size, generator):
                self.current = name
                self.yielded[name].append(xb.clone())
                yield xb, yb
        return gen

    def phases(self, task, loop_cfg):
        main = self.main_phase(task, loop_cfg)
        main.batches = self._recording(main.batches, "train")

        def before():
            self.side_params = list(self.model.head.parameters())

        side = Phase(
            name="side",
            batches=self._recording(lambda bs, g: shuffled_batches(task.train.x, task.train.y, bs, g), "side"),
            num_batches=lambda bs: count_batches(len(task.train), bs),
            epochs=1,
            params=lambda: self.side_params,
            lr=0.003,
            schedule="constant",
            augment=self.side_augment,  # the property under test
            generator=self.side_generator,
            before=before,
        )
        return [main, side]

    def train_step(self, x, y):
        opt = self.optimizer
        self.received[self.current].append(x.detach().clone())
        self.optimizers[self.current].append((
            opt.param_groups[0]["lr"], [id(p) for g in opt.param_groups for p in g["params"]],
            opt.param_groups[0]["momentum"], opt.param_groups[0]["weight_decay"], self.scheduler,
            [id(p) for p in self.trainable_parameters()]))
        return super().train_step(x, y)


def _recorder(stream, cfg, **kwargs) -> _Recorder:
    base = make_strategy("finetune", {"lr": 0.02}, stream, cfg)
    return _Recorder(base.config, base.ctx, **kwargs)


# ----------------------------------------------------------------------------- divergence
def test_a_diverged_side_phase_ends_the_run_as_diverged_naming_the_phase(tiny_stream):
    """DER whose classifier re-balancing of task 1 produces a NaN loss: the run
    stops there (before that task's row), and the error says task, epoch, phase."""
    cfg = _cfg(epochs=1)
    strategy = make_strategy("der", {"balance_epochs": 2}, tiny_stream, cfg)
    original = strategy.losses

    def nan_while_rebalancing_task_1(x, y, logits):
        terms = original(x, y, logits)
        # The auxiliary head exists during task 1's main phase and is dropped by
        # the re-balancing's before-step: no aux head in task 1 = re-balancing.
        if len(strategy.tasks) == 2 and strategy.model.aux_head is None:
            terms["ce"] = terms["ce"] * float("nan")
        return terms

    strategy.losses = nan_while_rebalancing_task_1
    result = run(strategy, tiny_stream, cfg, log=None)
    assert result.status == "diverged"
    assert "phase 'balance'" in result.error and "task 1 epoch 0" in result.error, result.error
    assert len(result.acc_class_il) == 1  # task 0's row is kept, task 1 has none
    last = result.timings[-1]
    assert last["task"] == 1 and "end_task_s" not in last and "eval_s" not in last
    assert [p["name"] for p in last["phases"]] == ["train", "balance"]
    # The diverged epoch's images are counted, in the phase and in the total.
    assert last["phases"][1]["images"] == len(strategy.memory)
    assert last["images_trained"] == sum(p["images"] for p in last["phases"])
    assert strategy.optimizer is None  # released even when the phase raised


# ----------------------------------------------------------------------------- timing
@pytest.mark.parametrize("method,side,overrides", [
    ("der", "balance", {"balance_epochs": 2}),
    ("packnet", "retrain", {"retrain_epochs": 2}),
])
def test_side_phases_are_timed_and_their_images_counted(tiny_stream, method, side, overrides):
    cfg = _cfg(epochs=1)
    strategy = make_strategy(method, overrides, tiny_stream, cfg)
    memory_after = []
    result = run(strategy, tiny_stream, cfg, log=None, callback=lambda r: memory_after.append(r.memory_size))
    assert result.status == "completed"
    for t, timing in enumerate(result.timings):
        task = tiny_stream.tasks[t]
        phases = timing["phases"]
        assert [p["name"] for p in phases] == ["train", side]
        main, extra = phases
        assert main["epochs"] == 1 and main["images"] > 0
        if method == "der":  # the balance phase steps on the updated memory (none in task 0)
            expected = 2 * memory_after[t] if t > 0 else 0
            assert extra["epochs"] == (2 if t > 0 else 0)
        else:  # the retrain phase steps on the task's training images
            expected = 2 * len(task.train)
        assert extra["images"] == expected
        assert timing["images_trained"] == main["images"] + extra["images"]
        for p in phases:
            assert p["before_s"] >= 0 and p["train_s"] >= 0
        # train_s covers every phase, before-steps included.
        assert timing["train_s"] >= sum(p["before_s"] + p["train_s"] for p in phases) - 1e-6
        for key in ("begin_task_s", "end_task_s", "eval_s"):
            assert timing[key] >= 0


# ----------------------------------------------------------------------------- augmentation
@pytest.mark.parametrize("side_augment", [False, True])
def test_each_phase_gets_the_augmentation_it_states(tiny_stream, side_augment):
    cfg = _cfg(epochs=1, augment="crop", crop_padding=2)
    strategy = _recorder(tiny_stream, cfg, side_augment=side_augment)
    result = run(strategy, tiny_stream, cfg, log=None)
    assert result.status == "completed"

    def unchanged(name):
        pairs = list(zip(strategy.yielded[name], strategy.received[name], strict=True))
        assert pairs
        return [torch.equal(strategy.normalize(raw), got) for raw, got in pairs]

    # The main phase follows the loop's setting (crop): its batches are altered.
    assert not all(unchanged("train"))
    if side_augment:
        assert not all(unchanged("side"))
    else:
        assert all(unchanged("side"))  # exactly the yielded images, only normalised


def test_a_phase_with_its_own_generator_leaves_the_loops_alone(tiny_stream):
    """Batch order and augmentation of a phase with a generator draw from it only."""
    cfg = _cfg(epochs=1, augment="crop")
    side_gen = torch.Generator().manual_seed(11)
    strategy = _recorder(tiny_stream, cfg, side_augment=True, side_generator=side_gen)
    task = tiny_stream.tasks[0]
    strategy.begin_task(task, 1, cfg.batch_size)
    _, side = strategy.phases(task, cfg)
    loop_gen = torch.Generator().manual_seed(0)
    loop_state, side_state = loop_gen.get_state(), side_gen.get_state()
    train_phase(strategy, side, cfg, loop_gen, task.task_id)
    assert torch.equal(loop_gen.get_state(), loop_state)
    assert not torch.equal(side_gen.get_state(), side_state)


# ----------------------------------------------------------------------------- optimiser
def test_each_phase_steps_with_its_own_optimiser_from_make_optimizer(tiny_stream):
    cfg = _cfg(epochs=2)
    strategy = _recorder(tiny_stream, cfg, side_augment=False)
    run(strategy, tiny_stream, cfg, log=None)
    config = strategy.config
    lr0, params, momentum, wd, scheduler, trainable = strategy.optimizers["train"][0]
    assert lr0 == config.lr == 0.02 and (momentum, wd) == (config.momentum, config.weight_decay)
    assert params == trainable  # the main phase moves every trainable parameter
    # The main phase's cosine schedule spans its steps: the last task's 2 epochs.
    batches = count_batches(len(tiny_stream.tasks[-1].train), cfg.batch_size)
    assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
    last_main = strategy.optimizers["train"][-1]
    assert last_main[4].T_max == 2 * batches
    # The side phase: its own lr, the parameters its params() gave, constant lr.
    for lr, params, momentum, wd, scheduler, _ in strategy.optimizers["side"]:
        assert lr == 0.003 and scheduler is None
        assert (momentum, wd) == (config.momentum, config.weight_decay)
    assert strategy.optimizers["side"][-1][1] == [id(p) for p in strategy.model.head.parameters()]
    assert strategy.optimizer is None and strategy.scheduler is None  # released after the phases


def test_der_and_packnet_side_phases_use_their_configured_optimiser(tiny_stream):
    cfg = _cfg(epochs=1)
    seen = {}
    for method, overrides, side in (("der", {"balance_lr": 0.007, "balance_epochs": 1}, "balance"),
                                    ("packnet", {"lr": 0.04, "retrain_lr_scale": 0.25}, "retrain")):
        strategy = make_strategy(method, overrides, tiny_stream, cfg)
        real_step = strategy.train_step

        def spy(x, y, strategy=strategy, real_step=real_step, method=method):
            opt = strategy.optimizer
            head = strategy.model.head if method == "der" else strategy.model.heads[-1]
            seen.setdefault(method, []).append((opt.param_groups[0]["lr"], strategy.scheduler,
                                                [id(p) for g in opt.param_groups for p in g["params"]],
                                                [id(p) for p in head.parameters()]))
            return real_step(x, y)

        strategy.train_step = spy
        assert run(strategy, tiny_stream, cfg, log=None).status == "completed"
    # DER's last steps re-balance task 2: lr balance_lr, constant, the head only.
    lr, scheduler, params, head = seen["der"][-1]
    assert lr == 0.007 and scheduler is None and params == head
    # ... while its main phase trained the new extractor too, at lr, on a cosine schedule.
    lr, scheduler, params, head = seen["der"][0]
    assert lr == strategy_lr("der") and scheduler is not None and len(params) > len(head)
    # PackNet's last steps retrain task 2: lr x retrain_lr_scale, constant, the
    # backbone and the task's head (frozen weights are masked in train_step).
    lr, scheduler, params, head = seen["packnet"][-1]
    assert lr == pytest.approx(0.04 * 0.25) and scheduler is None and set(head) < set(params)


def strategy_lr(method: str) -> float:
    from strategies.loop import strategy_config
    return strategy_config(method).lr


def test_make_optimizer_is_the_only_optimiser_constructor_in_strategies():
    """No ``torch.optim.X(...)`` / ``torch.optim.lr_scheduler.X(...)`` call in
    strategies/ outside ``Strategy.make_optimizer``."""
    found = []
    for path in sorted((ROOT / "strategies").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        owner: dict[int, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    owner.setdefault(id(inner), node.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if name.startswith(("torch.optim.", "optim.")) and not name.endswith(("zero_grad", "step")):
                    found.append((path.name, owner.get(id(node)), name))
    assert found, "the checker found no constructor at all: it is broken"
    assert {(f, fn) for f, fn, _ in found} == {("base.py", "make_optimizer")}, found


def test_side_phases_draw_from_their_per_purpose_generators(tiny_stream):
    """DER's re-balancing and PackNet's retraining of task k use the generator of
    purpose "der/balance" / "packnet/retrain", key k (strategies/rng.py): a
    stream of their own, fresh per task, whatever else the run drew."""
    from strategies.rng import purpose_generator

    cfg = _cfg(epochs=1, seed=3)
    for method, purpose in (("der", "der/balance"), ("packnet", "packnet/retrain")):
        strategy = make_strategy(method, {}, tiny_stream, cfg)
        for k, task in enumerate(tiny_stream.tasks[:2]):
            strategy.begin_task(task, cfg.epochs, cfg.batch_size)
            side = strategy.phases(task, cfg)[1]
            assert torch.equal(side.generator.get_state(), purpose_generator(3, purpose, k).get_state())

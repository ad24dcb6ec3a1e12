"""The strategy interface every continual-learning method implements.

A strategy owns a model and its optimiser step, and exposes small hooks that the
one training loop (``strategies/loop.py``; docs/ARCHITECTURE.md) calls in order,
per task:

    begin_task(task, epochs, batch_size)  grow the head, memory, new extractor ...
    phases(task, loop_cfg) -> [Phase]    the task's training, phase by phase
                                         (``strategies/phases.py``); default: one
                                         phase ``"train"`` over ``train_batches``
    train_batches(task, bs, gen)         (x_uint8, y) batches of the main phase;
                                         default: shuffled ``training_data(task)``
                                         (e.g. task + memory)
    train_step(x, y) -> {name: loss}     x already augmented + normalised; the
                                         strategy does backward and its own step
                                         (GEM projects the gradient, PackNet puts
                                         frozen weights back), in every phase
    end_task(task)                       memory selection, snapshots, Fisher, ...
    scores(x, task_id) -> N x n_seen     higher = more likely; class-IL takes the
                                         argmax over all seen classes, task-IL over
                                         task ``task_id``'s columns

The loop builds each phase's optimiser with ``make_optimizer`` -- the only place
an optimiser or a learning-rate schedule is constructed -- so every phase gets
the config's optimiser (SGD with momentum by default; Adam, AdamW) with its
weight decay, at the phase's own learning rate and schedule.

Losses are returned as detached tensors so the loop can sum them on the device
without a host synchronisation per step. Every strategy has a typed config
dataclass (``config_class``) that extends ``StrategyConfig``, and declares in its
own class the search space over that config (``search_space``: config field ->
``core.space`` distribution), so a strategy is one file. ``@register`` checks
both when the class is defined.
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from datasets.stream import Task
from strategies.batch_ops import InputNormalizer
from core.config import bounded, check_value, field_specs
from core.errors import UserError
from core import space
from core.space import Dist
from strategies.networks import IncrementalNet, build_backbone, count_parameters
from strategies.phases import OPTIMIZERS, SCHEDULES, Phase
from core.knobs import LOOP_KNOBS, TRAINING_LOOP_KNOBS

if TYPE_CHECKING:  # the loop imports this module; only the annotation needs its config
    from strategies.loop import LoopConfig


@dataclasses.dataclass
class StrategyConfig:
    """Optimiser knobs shared by every strategy: the training knobs of core/knobs.py.

    The defaults are the harness's historical optimiser (SGD with momentum 0.9,
    a cosine schedule per phase); ``optimizer``, ``lr_schedule`` and the rest are
    reachable with ``--set`` / ``--range`` (no default search space names them).
    """

    lr: float = bounded(0.05, min=1e-6, max=10.0, help="learning rate (the main plasticity knob)")
    momentum: float = bounded(0.9, min=0.0, max=0.999, help="SGD momentum (optimizer=sgd only)")
    weight_decay: float = bounded(5e-4, min=0.0, max=0.1,
                                  help="weight decay: L2 in the gradient for sgd/adam, decoupled for adamw")
    lr_schedule: str = bounded("cosine", choices=SCHEDULES,
                               help="per-phase learning-rate schedule (multistep: lr x lr_gamma at lr_milestones)")
    optimizer: str = bounded("sgd", choices=OPTIMIZERS, help="sgd (with momentum), adam or adamw")
    lr_gamma: float = bounded(0.2, min=1e-6, max=1.0,
                              help="multistep: lr factor at each milestone (iCaRL: 1/5)")
    lr_milestones: tuple[float, ...] = bounded((0.7, 0.9), min=0.0, max=1.0,
                                               help="multistep: milestones as fractions of a phase's steps "
                                                    "(iCaRL: 49/70, 63/70)")
    adam_beta1: float = bounded(0.9, min=0.0, max=0.9999, help="adam/adamw: first-moment decay")
    adam_beta2: float = bounded(0.999, min=0.0, max=0.99999, help="adam/adamw: second-moment decay")


# The learning-rate range every strategy but iCaRL searches. On a log scale: the
# iCaRL PyTorch reimplementation found the learning rate the dominant knob, with
# good values spread over more than a decade (0.1 .. 2 there).
LR_SPACE = space.F(1e-3, 1.0, log=True)


@dataclasses.dataclass
class RunContext:
    """What the loop tells a strategy: the stream's shape and input statistics,
    the resolved device, and the run's ``LoopConfig`` itself. The loop settings a
    strategy reads (backbone, batch size, seed, precision, ...) are properties
    of ``loop``, never copies, so there is one source for each of them."""

    num_classes_total: int
    image_shape: tuple[int, int, int]
    channel_mean: tuple[float, ...]
    channel_std: tuple[float, ...]
    loop: LoopConfig
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))

    @property
    def backbone(self) -> str:
        return self.loop.backbone

    @property
    def pretrained(self) -> bool:
        return self.loop.pretrained

    @property
    def channels_last(self) -> bool:
        return self.loop.channels_last

    @property
    def precision(self) -> str:
        return self.loop.precision

    @property
    def batch_size(self) -> int:
        return self.loop.batch_size

    @property
    def eval_batch_size(self) -> int:
        return self.loop.eval_batch_size

    @property
    def seed(self) -> int:
        return self.loop.seed


class Strategy:
    """Base class: finetuning behaviour (cross-entropy on the current batch)."""

    name: ClassVar[str] = "base"
    config_class: ClassVar[type] = StrategyConfig
    # Config field -> distribution searched by search/run.py. Not defined here:
    # every registered class states its own (``register`` checks it).
    search_space: ClassVar[dict[str, Dist]]
    task_incremental_only: ClassVar[bool] = False
    # Where the default config's values come from (a paper, the course notebook,
    # a validation search, or set by hand), shown by ``search/rerun.py --list``
    # so that a user knows which defaults rest on evidence.
    defaults_source: ClassVar[str] = ""
    # Training loop knobs (core/knobs.py TRAINING_LOOP_KNOBS: batch size,
    # augmentation, crop padding) that belong to this method's default config,
    # e.g. {"augment": "none"}: each search trial and direct run of the method
    # gets them, as a --set would, unless the user sets the knob (its flag,
    # --set or --range). Empty: the dataset's defaults (search/cli.py).
    loop_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: StrategyConfig, ctx: RunContext) -> None:
        self.config = config
        self.ctx = ctx
        self.device = ctx.device
        self.normalize = InputNormalizer(ctx.channel_mean, ctx.channel_std, ctx.device, ctx.channels_last)
        self.model = self.build_model()
        self.num_seen = 0  # classes seen so far (= stream labels 0..num_seen-1)
        self.tasks: list[Task] = []  # tasks seen so far (for joint, GEM, ...)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None

    # -- construction -----------------------------------------------------
    def new_backbone(self) -> nn.Module:
        return build_backbone(self.ctx.backbone, self.ctx.image_shape[0], pretrained=self.ctx.pretrained)

    def build_model(self) -> nn.Module:
        return self.prepare_module(IncrementalNet(self.new_backbone()))

    def prepare_module(self, module: nn.Module) -> nn.Module:
        module = module.to(self.device)
        if self.ctx.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return module

    def autocast(self):
        enabled = self.ctx.precision == "bf16"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def validate_against(self, stream) -> None:
        """Reject configs that cannot work on this stream (one-line ConfigError)."""

    # -- hooks the loop calls ---------------------------------------------
    def begin_task(self, task: Task, epochs: int, batch_size: int) -> None:
        """Before the task's phases: record the task and grow the head. The
        optimiser is not built here: the loop builds one per phase."""
        self.tasks.append(task)
        self.num_seen += task.num_classes
        self.grow_head(task)

    def grow_head(self, task: Task) -> None:
        self.model.add_classes(task.num_classes)
        self.model.head.to(self.device)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def phases(self, task: Task, loop_cfg: LoopConfig) -> list[Phase]:
        """The task's training, in order (called by the loop after ``begin_task``).
        Override to add phases after the main one (DER, PackNet)."""
        return [self.main_phase(task, loop_cfg)]

    def main_phase(self, task: Task, loop_cfg: LoopConfig) -> Phase:
        """The training every strategy has: the loop's epochs over ``train_batches``,
        the trainable parameters, the config's learning rate and schedule."""
        return Phase(
            name="train",
            batches=lambda batch_size, gen: self.train_batches(task, batch_size, gen),
            num_batches=lambda batch_size: self.num_train_batches(task, batch_size),
            epochs=loop_cfg.epochs,
            params=self.trainable_parameters,
            lr=self.config.lr,
            schedule=self.config.lr_schedule,
            # The loop's setting: the representation is learned here, on the task's data.
            augment=True,
        )

    def make_optimizer(self, params: list[nn.Parameter], steps: int, lr: float | None = None,
                       schedule: str | None = None, optimizer: str | None = None) -> torch.optim.Optimizer:
        """The one place an optimiser and a schedule are built.

        ``optimizer`` (default: the config's) over ``params`` at ``lr`` (default:
        the config's), with the config's weight decay:

        - ``sgd``: SGD with the config's momentum, weight decay as L2 in the gradient;
        - ``adam``: Adam (Kingma & Ba 2015, Alg. 1) with betas (adam_beta1,
          adam_beta2), weight decay as L2 in the gradient;
        - ``adamw``: AdamW (Loshchilov & Hutter 2019, Alg. 2): the decay is
          decoupled from the adaptive step, w <- w - lr * wd * w.

        ``schedule`` (default: the config's ``lr_schedule``) over ``steps``
        optimiser steps: ``constant``; ``cosine`` annealing to zero over the
        phase; ``multistep``: lr x ``lr_gamma`` at each of ``lr_milestones``
        (fractions of the phase's steps), the schedule of iCaRL (Rebuffi et al.
        2017, §4: lr divided by 5 after 49 and 63 of 70 epochs, i.e. gamma 0.2
        at 0.7 and 0.9). Sets ``self.optimizer`` / ``self.scheduler``, which
        ``train_step`` uses, and returns the optimiser."""
        cfg = self.config
        lr = cfg.lr if lr is None else lr
        schedule = cfg.lr_schedule if schedule is None else schedule
        name = cfg.optimizer if optimizer is None else optimizer
        if name == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        elif name == "adam":
            self.optimizer = torch.optim.Adam(params, lr=lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                              weight_decay=cfg.weight_decay)
        elif name == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                               weight_decay=cfg.weight_decay)
        else:
            raise ValueError(f"unknown optimizer {name!r} ({', '.join(OPTIMIZERS)})")
        if schedule == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(steps, 1))
        elif schedule == "multistep":
            # Fractions, not epochs: the same setting means the same point of
            # every phase whatever its length (epochs x batches). A milestone
            # rounds to a step >= 1 (the scheduler never sees step 0).
            milestones = sorted(max(1, round(f * steps)) for f in cfg.lr_milestones)
            self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones=milestones,
                                                                  gamma=cfg.lr_gamma)
        elif schedule == "constant":
            self.scheduler = None
        else:
            raise ValueError(f"unknown learning-rate schedule {schedule!r} ({', '.join(SCHEDULES)})")
        return self.optimizer

    def training_data(self, task: Task) -> tuple[torch.Tensor, torch.Tensor]:
        return task.train.x, task.train.y

    def train_batches(self, task: Task, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y = self.training_data(task)
        yield from shuffled_batches(x, y, batch_size, generator)

    def num_train_batches(self, task: Task, batch_size: int) -> int:
        x, _ = self.training_data(task)
        return count_batches(len(x), batch_size)

    def losses(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms for one batch; the total is their sum. Override to add terms."""
        return {"ce": F.cross_entropy(logits, y)}

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        self.model.train()
        logits = self.model(x)
        terms = self.losses(x, y, logits)
        total = sum(terms.values())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.before_optimizer_step()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return {"loss": total.detach(), **{k: v.detach() for k, v in terms.items() if len(terms) > 1}}

    def before_optimizer_step(self) -> None:
        """Hook between backward and step (GEM projects the gradient here)."""

    def end_task(self, task: Task) -> None:
        """Hook after a task's training (memory, snapshots, Fisher...)."""

    @torch.no_grad()
    def scores(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        return self.model(x)[:, : self.num_seen]

    # -- reporting ----------------------------------------------------------
    def memory_size(self) -> int:
        """Number of stored exemplar images (0 for memory-free methods)."""
        return 0

    def num_parameters(self) -> int:
        return count_parameters(self.model)

    def extra_report(self) -> dict[str, Any]:
        """Strategy-specific figures recorded in the result (e.g. DER's growth)."""
        return {}

    # -- helpers for subclasses ------------------------------------------------
    @torch.no_grad()
    def extract_features(self, x_uint8: torch.Tensor, module: nn.Module | None = None) -> torch.Tensor:
        """Backbone features of uint8 images, in eval mode, batched (float32)."""
        module = module or self.model
        was_training = module.training
        module.eval()
        out = []
        with self.autocast():
            for start in range(0, len(x_uint8), self.ctx.eval_batch_size):
                xb = self.normalize(x_uint8[start:start + self.ctx.eval_batch_size])
                out.append(module.features(xb).float())
        module.train(was_training)
        if not out:
            return torch.empty(0, getattr(module.backbone, "out_dim", 0), device=self.device)
        return torch.cat(out)

    @contextmanager
    def eval_mode(self):
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)


def count_batches(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    # A final batch of one image is dropped: BatchNorm cannot train on it.
    return full + (1 if rest > 1 else 0)


def shuffled_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    n = len(x)
    order = torch.randperm(n, generator=generator).to(x.device)
    for b in range(count_batches(n, batch_size)):
        idx = order[b * batch_size:(b + 1) * batch_size]
        yield x[idx], y[idx]


STRATEGIES: dict[str, type[Strategy]] = {}


class StrategyDefinitionError(UserError, TypeError):
    """A strategy class that cannot be registered; the message says what to fix."""


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: add ``cls`` to ``STRATEGIES`` under ``cls.name``.

    Checks what the search and the loop rely on, so a mistake fails when the
    strategy's module is imported and not halfway through a search: a config
    dataclass, a search space declared in the class itself (an inherited one
    would silently search the parent's knobs) that names only config fields
    with bounds the config accepts, and a name no other class holds.
    """
    where = f"strategy {cls.__module__}.{cls.__qualname__}"
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise StrategyDefinitionError(f"@register takes a Strategy subclass, got {cls!r}")
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise StrategyDefinitionError(f"{where}: set a class attribute name = \"...\" (the --method name)")
    config_class = cls.config_class
    if not dataclasses.is_dataclass(config_class) or not issubclass(config_class, StrategyConfig):
        raise StrategyDefinitionError(f"{where}: config_class must be a dataclass extending StrategyConfig")
    # A trial's params are split by name into loop knobs and strategy knobs
    # (core/knobs.py): a config field named like a loop knob would be ambiguous.
    clash = sorted(set(field_specs(config_class)) & set(LOOP_KNOBS))
    if clash:
        raise StrategyDefinitionError(
            f"{where}: config field(s) {', '.join(map(repr, clash))} clash with the loop knobs a search may set "
            f"per trial ({', '.join(LOOP_KNOBS)}); rename them")
    if "search_space" not in cls.__dict__:
        raise StrategyDefinitionError(
            f"{where} ({name!r}) declares no search_space: add a class attribute search_space = "
            "{field: core.space.F/I/C(...)} over its config fields (a subclass may reuse its parent's explicitly)")
    check_space(cls.search_space, config_class, f"{where} ({name!r})")
    check_loop_defaults(cls.loop_defaults, f"{where} ({name!r})")
    taken = STRATEGIES.get(name)
    # The same class registered again (its module imported twice, e.g. as a
    # plugin by path and by name) replaces itself; another class may not.
    if taken is not None and (taken.__module__, taken.__qualname__) != (cls.__module__, cls.__qualname__):
        raise StrategyDefinitionError(f"{where}: name {name!r} is already registered by "
                                      f"{taken.__module__}.{taken.__qualname__}; choose another name")
    STRATEGIES[name] = cls
    return cls


def check_loop_defaults(defaults: Any, where: str) -> None:
    """A method's ``loop_defaults`` name training loop knobs only (a protocol
    knob such as epochs defines the benchmark, not a method), with values
    ``LoopConfig`` accepts."""
    from strategies.loop import LoopConfig  # strategies.loop imports this module

    if not isinstance(defaults, dict):
        raise StrategyDefinitionError(f"{where}: loop_defaults must be a dict of loop knob -> value")
    other = sorted(k for k in defaults if k not in TRAINING_LOOP_KNOBS)
    if other:
        raise StrategyDefinitionError(f"{where}: loop_defaults names {', '.join(map(repr, other))}; a method's default "
                                      f"config may set only the training loop knobs {', '.join(TRAINING_LOOP_KNOBS)}")
    for key, value in defaults.items():
        try:
            check_value(LoopConfig, key, value, owner="loop")
        except (UserError, ValueError, TypeError) as exc:
            raise StrategyDefinitionError(f"{where}: loop_defaults[{key!r}]: {exc}") from None


def check_space(space: Any, config_class: type, where: str) -> None:
    """A search space is a non-empty dict of config field -> Dist whose bounds
    (or choices) are values the field accepts."""
    if not isinstance(space, dict) or not space:
        raise StrategyDefinitionError(f"{where}: search_space must be a non-empty dict of config field -> Dist")
    fields = field_specs(config_class)
    try:
        types = typing.get_type_hints(config_class)
    except Exception:  # an annotation that does not resolve: the int/float check below is skipped
        types = {}
    unknown = sorted(k for k in space if k not in fields)
    if unknown:
        raise StrategyDefinitionError(f"{where}: search_space names {', '.join(map(repr, unknown))}, not fields of "
                                      f"{config_class.__name__} (fields: {', '.join(sorted(fields))})")
    for key, dist in space.items():
        if not isinstance(dist, Dist):
            raise StrategyDefinitionError(f"{where}: search_space[{key!r}] must be a core.space.F/I/C, got {dist!r}")
        if dist.type == "float" and types.get(key) is int:
            raise StrategyDefinitionError(f"{where}: search_space[{key!r}] is a float range over an int field (use I)")
        if dist.type == "categorical" and len(set(dist.choices or ())) < 2:
            raise StrategyDefinitionError(f"{where}: search_space[{key!r}] needs at least two distinct choices")
        ends = dist.choices if dist.type == "categorical" else (dist.low, dist.high)
        try:
            for value in ends:
                if dist.type == "int" and not float(value).is_integer():
                    raise ValueError(f"int range bound {value!r} is not an integer")
                check_value(config_class, key, value, owner=config_class.__name__)
        except (UserError, ValueError, TypeError) as exc:
            raise StrategyDefinitionError(f"{where}: search_space[{key!r}]: {exc}") from None
        if dist.type != "categorical":
            if not dist.low < dist.high:
                raise StrategyDefinitionError(f"{where}: search_space[{key!r}] is empty (low must be below high)")
            if dist.log and dist.low <= 0:
                raise StrategyDefinitionError(f"{where}: search_space[{key!r}] is on a log scale, low must be > 0")

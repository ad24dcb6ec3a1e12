"""Training phases: the stretches of optimiser steps that make up one task's training.

A strategy describes each task's training as a list of ``Phase`` objects
(``Strategy.phases``); the one loop (``strategies/loop.py``) runs them in order
between ``begin_task`` and ``end_task``, every phase with the same machinery:
augmentation, autocast, loss sums on the device, the NaN/inf check, timing and
image counts, and a fresh optimiser from ``Strategy.make_optimizer``.

Most strategies have one phase, the main training on ``train_batches``. Two
have a second one after it:

- DER (Yan, Xie & He, CVPR 2021, §3.3 "classifier learning"): the classifier
  alone is re-trained on the class-balanced exemplar memory;
- PackNet (Mallya & Lazebnik, CVPR 2018, §3): after pruning, the kept weights
  are re-trained briefly with the pruned ones held at zero.

A phase's ``before`` step runs when the phase starts, before its optimiser is
built, so the phase can depend on what the earlier phases produced (DER's
memory is updated from the just-trained model before it is re-balanced on;
PackNet prunes the just-trained weights before it retrains the kept ones). The
parameters, batches and batch count are callables for the same reason: they
are read after the before-step, not when the phase list is made.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import torch
from torch import nn

# Learning-rate schedules ``Strategy.make_optimizer`` can build, over a phase's
# steps (multistep: iCaRL's, Rebuffi et al. 2017 §4), and its optimisers.
SCHEDULES = ("constant", "cosine", "multistep")
OPTIMIZERS = ("sgd", "adam", "adamw")

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclasses.dataclass
class Phase:
    """One stretch of a task's training; see the module docstring.

    ``batches(batch_size, generator)`` yields (uint8 images, labels) batches for
    one epoch; ``num_batches(batch_size)`` says how many it yields (the length
    of the learning-rate schedule is epochs x that). ``params()`` are the
    parameters the phase's optimiser moves (the strategy's ``train_step`` still
    decides what actually changes: GEM projects, PackNet restores frozen weights).
    ``augment``: True applies the loop's augmentation setting (``LoopConfig.augment``)
    to the phase's batches, False feeds them unaugmented. ``generator`` drives the
    phase's batch order and augmentation; None means the loop's own generator.
    ``before`` runs at the start of the phase, before its optimiser is built.
    ``optimizer``: None builds the config's optimiser (``StrategyConfig.optimizer``);
    a phase whose learning rate is its own absolute setting, tuned for one
    optimiser (DER's ``balance_lr``, an SGD rate), names that optimiser here.
    """

    name: str
    batches: Callable[[int, torch.Generator], Batches]
    num_batches: Callable[[int], int]
    epochs: int
    params: Callable[[], list[nn.Parameter]]
    lr: float
    schedule: str
    augment: bool
    generator: torch.Generator | None = None
    before: Callable[[], None] | None = None
    optimizer: str | None = None

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"phase {self.name!r}: schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise ValueError(f"phase {self.name!r}: optimizer must be None or one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.epochs < 0:
            raise ValueError(f"phase {self.name!r}: epochs must be >= 0, got {self.epochs}")
        if not isinstance(self.augment, bool):
            raise TypeError(f"phase {self.name!r}: augment must be True or False, got {self.augment!r}")

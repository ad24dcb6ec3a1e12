"""Joint training: at task t, train on the union of all training data seen so far.

The upper bound (the course notebook: 89.8-91 % on GTSRB 5x8). It is not a
continual learner -- it stores everything -- so its memory size is the number of
past training images it revisits.
"""
from __future__ import annotations

import dataclasses

import torch

from datasets.stream import Task
from strategies.base import LR_SPACE, Strategy, StrategyConfig, register


@dataclasses.dataclass
class JointConfig(StrategyConfig):
    pass


@register
class Joint(Strategy):
    name = "joint"
    config_class = JointConfig
    defaults_source = (
        "the shared optimiser defaults (SGD, momentum 0.9, lr 0.05, weight decay 5e-4, cosine per task), set "
        "by hand when the harness was built, not searched; joint training is the upper bound"
    )
    search_space = {"lr": LR_SPACE}  # nothing but the optimiser to tune

    def training_data(self, task: Task) -> tuple[torch.Tensor, torch.Tensor]:
        seen = self.tasks  # includes ``task`` after begin_task
        return torch.cat([t.train.x for t in seen]), torch.cat([t.train.y for t in seen])

    def memory_size(self) -> int:
        return sum(len(t.train) for t in self.tasks[:-1])

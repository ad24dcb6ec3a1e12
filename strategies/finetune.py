"""Fine-tuning: plain SGD on each new task, nothing done against forgetting.

The lower bound of every class-incremental comparison (the course notebook
reached 12.9 % final accuracy on GTSRB 5x8). All behaviour is the base
class's: cross-entropy over the classes seen so far on the current task's data.
"""
from __future__ import annotations

import dataclasses

from strategies.base import LR_SPACE, Strategy, StrategyConfig, register


@dataclasses.dataclass
class FinetuneConfig(StrategyConfig):
    pass


@register
class Finetune(Strategy):
    name = "finetune"
    config_class = FinetuneConfig
    defaults_source = (
        "the shared optimiser defaults (SGD, momentum 0.9, lr 0.05, weight decay 5e-4, cosine per task), set "
        "by hand when the harness was built, not searched; finetune is the no-protection lower bound"
    )
    search_space = {"lr": LR_SPACE}  # nothing but the optimiser to tune

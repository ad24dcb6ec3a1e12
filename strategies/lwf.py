"""Learning without Forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2017).

No exemplar memory. After each task the network is snapshotted (a frozen,
eval-mode copy: the teacher); while the next task trains, the loss adds
knowledge distillation (Hinton et al. 2015) of the teacher's outputs on the NEW
task's images, LwF Eq. 3 with the temperature T (the paper uses T = 2):

    loss = CE(f(x), y) + kd_weight * T^2 * KL(softmax(f_old(x)/T) || softmax(f(x)[:, :old]/T))

(``strategies/distill.py``'s ``softmax_kd``; the T^2 factor keeps the gradient
size independent of T, so ``kd_weight`` and ``temperature`` can be searched
separately.)

Class-incremental adaptation: the paper has one head per task and distils each
old head separately; here there is one growing head, so the cross-entropy runs
over all classes seen so far and the distillation over the old classes' logits
taken together (the usual class-IL LwF of the iCaRL/PyCIL comparisons). The
paper's optional warm-up step (first train only the new head with the backbone
frozen) is not done: it would need a second training phase outside the shared
loop, and the paper reports it only speeds up convergence.

``kd_weight = 0`` is exactly fine-tuning (no teacher is kept, no extra term, the
same random-number stream), which the tests check bit for bit.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from datasets.stream import Task
from strategies.base import LR_SPACE, Strategy, StrategyConfig, register
from core import space
from core.config import bounded
from strategies.distill import softmax_kd


@dataclasses.dataclass
class LwFConfig(StrategyConfig):
    kd_weight: float = bounded(1.0, min=0.0, max=1000.0, help="weight of the distillation term (lambda_o in LwF Eq. 3; 0 = finetune)")
    temperature: float = bounded(2.0, min=0.05, max=100.0, help="distillation temperature T (paper: 2)")


@register
class LwF(Strategy):
    name = "lwf"
    config_class = LwFConfig
    # kd_weight on a log scale around the default 1 (off is finetune, not LwF);
    # temperature on a log scale around the paper's T = 2.
    search_space = {"lr": LR_SPACE, "kd_weight": space.F(0.1, 10.0, log=True),
                    "temperature": space.F(1.0, 8.0, log=True)}

    def __init__(self, config, ctx) -> None:
        super().__init__(config, ctx)
        self.old_model: torch.nn.Module | None = None  # frozen teacher (previous tasks' model)

    def losses(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = {"ce": F.cross_entropy(logits, y)}
        if self.old_model is not None and self.config.kd_weight > 0:
            with torch.no_grad():
                teacher = self.old_model(x)  # logits over the classes seen before this task
            terms["kd"] = self.config.kd_weight * softmax_kd(logits, teacher, self.config.temperature)
        return terms

    def end_task(self, task: Task) -> None:
        # Snapshot AFTER the task is learnt: the teacher for every later task is the
        # model as it was at the end of the previous one (LwF keeps only the latest).
        if self.config.kd_weight > 0:
            self.old_model = self.frozen_copy(self.model)

"""Experience replay with an optional knowledge-distillation term.

Rehearsal as in the course notebook: a fixed total memory (200 images on GTSRB)
split evenly over the seen classes, chosen at random. ``memory_batch = 0`` concatenates
the memory with the new task's data (the notebook); ``memory_batch > 0`` (default)
adds that many random exemplars to every batch instead -- experience replay as in
Chaudhry et al. 2019, Alg. 1, which keeps 5 exemplars per class from being drowned
by ~7,000 new images on GTSRB. With ``kd_weight > 0`` the loss adds softmax distillation
(Hinton et al. 2015, Eq. 2) of the previous model's old-class logits at
temperature ``temperature`` -- the notebook's "rehearsal KD" (T = 2). The teacher
is the model at the end of the previous task (``strategies/distill.py``'s
``Teacher``). With the memory fixed at 0 this is LwF (``strategies/lwf.py``).

    loss = CE(f(x), y) + kd_weight * T^2 * KL(softmax(f_old(x)/T) || softmax(f(x)[:old]/T))
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from datasets.stream import Task
from strategies.base import LR_SPACE, register
from core import space
from core.config import bounded
from strategies.distill import Teacher
from strategies.rehearsal import MEMORY_SPACE, RehearsalConfig, RehearsalStrategy


@dataclasses.dataclass
class ReplayConfig(RehearsalConfig):
    kd_weight: float = bounded(0.0, min=0.0, max=100.0, help="weight of distillation on old-class logits (0 = plain replay)")
    temperature: float = bounded(2.0, min=0.05, max=100.0, help="distillation temperature T")
    memory_batch: int = bounded(64, min=0, max=65536, help="exemplars added to every batch (0 = concatenate memory to the task data)")


@register
class Replay(RehearsalStrategy):
    name = "replay"
    config_class = ReplayConfig
    defaults_source = (
        "the course notebook's rehearsal: 200 images in all, random selection, distillation off (T = 2 when "
        "on); 64 memory images per batch and the optimiser (lr 0.05) set by hand"
    )
    # KD weight from 0 (plain replay) up; temperature on a log scale around the
    # notebook's T = 2.
    search_space = {"lr": LR_SPACE, "memory": MEMORY_SPACE, "kd_weight": space.F(0.0, 4.0),
                    "temperature": space.F(1.0, 8.0, log=True)}

    def __init__(self, config, ctx) -> None:
        super().__init__(config, ctx)
        self.teacher = Teacher()

    def train_batches(self, task: Task, batch_size: int, generator: torch.Generator):
        if self.config.memory_batch == 0:
            return super().train_batches(task, batch_size, generator)
        return self.mixed_batches(task, batch_size, generator, self.config.memory_batch)

    def num_train_batches(self, task: Task, batch_size: int) -> int:
        if self.config.memory_batch == 0:
            return super().num_train_batches(task, batch_size)
        return self.num_mixed_batches(task, batch_size)

    def losses(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = {"ce": F.cross_entropy(logits, y)}
        if self.teacher.ready and self.config.kd_weight > 0:
            terms["kd"] = self.config.kd_weight * self.teacher.softmax_kd(logits, x, self.config.temperature)
        return terms

    def end_task(self, task: Task) -> None:
        if self.config.memory > 0:  # memory 0 (LwF): nothing to select
            self.update_memory(task)
        # Without distillation no teacher is kept: kd_weight = 0 costs nothing and
        # draws no random number, so it is exactly plain replay (or finetune).
        if self.config.kd_weight > 0:
            self.teacher.snapshot(self.model)

"""Knowledge distillation from a frozen teacher: the previous task's model.

``Teacher`` is the one place a strategy gets its teacher from: ``snapshot`` at
``end_task`` keeps a frozen, eval-mode copy of the model as it is once the task
is learnt (LwF keeps only the latest such model, and so do replay + KD and
iCaRL); while the next task trains, ``logits(x)`` are the teacher's outputs,
i.e. the OLD classes' logits (its head had only those), and the two targets
built from them are

- ``softmax_kd``: Hinton et al. 2015, Eq. 2 / Li & Hoiem 2016 (LwF) Eq. 3: KL
  between temperature-softened teacher and student distributions over the OLD
  classes' logits, scaled by T^2 so gradient size does not depend on T;
- ``sigmoid_kd_targets``: iCaRL (Rebuffi et al. 2017, Alg. 3): the old classes'
  binary targets are the previous network's sigmoid outputs.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def softmax_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    n_old = teacher_logits.shape[1]
    log_p = F.log_softmax(student_logits[:, :n_old].float() / temperature, dim=1)
    q = F.softmax(teacher_logits.float() / temperature, dim=1)
    return F.kl_div(log_p, q, reduction="batchmean") * temperature * temperature


def sigmoid_kd_targets(onehot: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Replace the old classes' columns of ``onehot`` with the teacher's sigmoids."""
    n_old = teacher_logits.shape[1]
    targets = onehot.clone()
    targets[:, :n_old] = torch.sigmoid(teacher_logits.float())
    return targets


def frozen_copy(module: nn.Module) -> nn.Module:
    """An eval-mode copy with no gradients: BatchNorm keeps the statistics it
    had, and nothing the student does can move it."""
    snapshot = copy.deepcopy(module).eval()
    for p in snapshot.parameters():
        p.requires_grad_(False)
    return snapshot


class Teacher:
    """The frozen model of the end of the previous task (None before the first
    snapshot) and the distillation terms computed from it."""

    def __init__(self) -> None:
        self.model: nn.Module | None = None

    @property
    def ready(self) -> bool:
        return self.model is not None

    def snapshot(self, model: nn.Module) -> None:
        """Keep ``model`` as it is now (called at the end of a task: the teacher
        of every later task is the model once this one is learnt)."""
        self.model = frozen_copy(model)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's logits for a normalised batch: one column per old class."""
        return self.model(x)

    def softmax_kd(self, student_logits: torch.Tensor, x: torch.Tensor, temperature: float) -> torch.Tensor:
        """T^2-scaled KL from the teacher's to the student's old-class distribution on ``x``."""
        return softmax_kd(student_logits, self.logits(x), temperature)

    def sigmoid_targets(self, onehot: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``onehot`` with the old classes' columns replaced by the teacher's sigmoids on ``x``."""
        return sigmoid_kd_targets(onehot, self.logits(x))

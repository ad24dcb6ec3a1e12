"""Knowledge-distillation losses.

- ``softmax_kd``: Hinton et al. 2015, Eq. 2 / Li & Hoiem 2016 (LwF) Eq. 3: KL
  between temperature-softened teacher and student distributions over the OLD
  classes' logits, scaled by T^2 so gradient size does not depend on T.
- ``sigmoid_kd_targets``: iCaRL (Rebuffi et al. 2017, Alg. 3): the old classes'
  binary targets are the previous network's sigmoid outputs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


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

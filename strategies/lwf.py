"""Learning without Forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2017): replay with no memory.

No exemplar memory. After each task the network is snapshotted (a frozen,
eval-mode copy: the teacher, ``strategies/distill.py``'s ``Teacher``); while
the next task trains, the loss adds knowledge distillation (Hinton et al. 2015)
of the teacher's outputs on the NEW task's images, LwF Eq. 3 with the
temperature T (the paper uses T = 2):

    loss = CE(f(x), y) + kd_weight * T^2 * KL(softmax(f_old(x)/T) || softmax(f(x)[:, :old]/T))

(the T^2 factor keeps the gradient size independent of T, so ``kd_weight`` and
``temperature`` can be searched separately).

That is exactly replay with KD (``strategies/replay.py``) and an empty memory,
so LwF is a preset of replay: the same class and code path, with the memory
fixed at 0 -- ``memory``, ``memory_batch`` and ``selection`` are class
constants of ``LwFConfig``, not fields, so they can be neither set nor searched
-- its own name, its own defaults (distillation on, ``kd_weight = 1``) and its
own search space.

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
from typing import ClassVar

from core import space
from core.config import bounded
from strategies.base import LR_SPACE, StrategyConfig, register
from strategies.replay import Replay


@dataclasses.dataclass
class LwFConfig(StrategyConfig):
    kd_weight: float = bounded(1.0, min=0.0, max=1000.0, help="weight of the distillation term (lambda_o in LwF Eq. 3; 0 = finetune)")
    temperature: float = bounded(2.0, min=0.05, max=100.0, help="distillation temperature T (paper: 2)")
    # Replay's memory knobs, fixed: LwF keeps no exemplar.
    memory: ClassVar[int] = 0
    memory_batch: ClassVar[int] = 0
    selection: ClassVar[str] = "random"


@register
class LwF(Replay):
    name = "lwf"
    config_class = LwFConfig
    defaults_source = (
        "Li & Hoiem 2016: temperature 2 and distillation weight 1 (the paper's T and lambda_o); the optimiser "
        "(lr 0.05) set by hand"
    )
    # kd_weight on a log scale around the default 1 (off is finetune, not LwF);
    # temperature on a log scale around the paper's T = 2.
    search_space = {"lr": LR_SPACE, "kd_weight": space.F(0.1, 10.0, log=True),
                    "temperature": space.F(1.0, 8.0, log=True)}

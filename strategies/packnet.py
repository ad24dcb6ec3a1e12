"""PackNet: adding multiple tasks to a single network by iterative pruning
(Mallya & Lazebnik, CVPR 2018).

Task-INCREMENTAL only: every task has its own classifier head and its own
subnetwork, chosen at test time by the task identity (so PackNet is compared on
its own task-IL front, never mixed with class-incremental methods). Per task t
(paper §3, Fig. 1), as two training phases of the one loop (``phases``):

1. Train (phase ``"train"``): the loop's epochs over task t's data; only the FREE weights of the
   backbone (owned by no earlier task) move. Weights owned by tasks < t get a
   zero gradient (``before_optimizer_step``) and, because weight decay and
   momentum would still move them, are copied back bit for bit after every
   optimizer step (``train_step``): frozen means exactly frozen.
2. Prune (the before-step of phase ``"retrain"``): in every conv / linear layer of the backbone, the
   ``prune_ratio`` (paper: 0.75; 0.5 also used) fraction of task t's free weights
   with the smallest magnitude is set to zero and released for later tasks; the
   rest become task t's. Pruning is per layer, as in the paper and its code, so
   every layer keeps capacity for later tasks.
3. Retrain (phase ``"retrain"``) the kept weights briefly (``retrain_epochs``
   at ``lr * retrain_lr_scale``, constant; the paper retrains at a lower
   learning rate) with the pruned ones held at zero, then freeze them
   (``end_task``): they belong to task t.
   With BatchNorm backbones the running statistics are then re-estimated on the
   task's training images (``bn_recalibrate``, in ``end_task``): after pruning 75 % of the
   weights, the averages kept during training describe a different network,
   and a from-scratch SimpleCNN evaluated with them fell to chance on the tiny
   test stream (1.0 -> 0.5 task-IL accuracy; 1.0 with recalibration).

Inference for task j (paper §3, "Inference"): the backbone with the weights
owned by tasks 0..j (later tasks' and still-free weights masked to zero), task
j's BatchNorm state and task j's head. That network is bit-identical however
many tasks come later, so task j's task-IL accuracy never changes.

Ownership is one small integer tensor per layer (0 = free, k+1 = owned by task
k), so the per-task masks are disjoint by construction; the paper stores the
same thing in log2(T+1) bits per weight.

Choices for parameters the paper does not prune:

- Biases (conv / linear biases of the backbone): trained on task 0 only, then
  fixed for all tasks -- the paper's choice (its code's ``train_bias=False``).
  Shared by every task, they never change after task 0, so they cannot break
  earlier tasks.
- BatchNorm: PER TASK. The affine parameters and running statistics are trained
  on every task (task t starts from task t-1's) and stored after task t's
  retraining; task j's forward pass uses task j's copy. The original code
  freezes BN after task 0 (``train_bn=False``), which suits its ImageNet-trained
  VGG-16 without BN; here backbones are usually trained from scratch and BN
  statistics of task 0 would be wrong for later tasks. Per-task BN costs two
  vectors plus two statistics per channel per task (a few KB) and keeps earlier
  tasks exactly unchanged, like the masks.
- Heads: one ``nn.Linear`` per task, trained during its task only, then frozen.

The post-pruning retraining is a phase like the main training: the loop runs
it with the same ``train_step`` (same loss, gradient masking and exact
restore), NaN check and timing; its before-step prunes and arms the kept
weights as the trainable set.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from datasets.stream import Task
from core import space
from strategies.base import LR_SPACE, Strategy, StrategyConfig, count_batches, register, shuffled_batches
from strategies.phases import Phase
from strategies.rng import purpose_generator
from core.config import ConfigError, bounded
from strategies.networks import count_parameters

FREE = 0  # owner code of a weight no task owns; task k owns code k + 1


@dataclasses.dataclass
class PackNetConfig(StrategyConfig):
    prune_ratio: float = bounded(0.75, min=0.01, max=0.99,
                                 help="fraction of each task's free weights (per layer) pruned and released (paper: 0.75)")
    retrain_epochs: int = bounded(1, min=0, max=1000, help="epochs retraining the kept weights after pruning (0 = none)")
    retrain_lr_scale: float = bounded(0.1, min=1e-4, max=1.0, help="retraining learning rate = lr x this (constant)")
    bn_recalibrate: bool = bounded(True, help="re-estimate BatchNorm statistics of the final pruned network per task")


class PackNetNet(nn.Module):
    """Shared backbone + one linear head per task; ``forward`` uses head ``active``."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleList()
        self.active = 0

    @property
    def num_classes(self) -> int:
        return sum(h.out_features for h in self.heads)

    def add_head(self, n: int) -> nn.Linear:
        head = nn.Linear(self.backbone.out_dim, n)
        self.heads.append(head)
        self.active = len(self.heads) - 1
        return head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads[self.active](self.backbone(x))


@register
class PackNet(Strategy):
    name = "packnet"
    config_class = PackNetConfig
    defaults_source = (
        "Mallya & Lazebnik 2018: prune ratio 0.75 (the paper's); 1 retraining epoch at lr x 0.1 and the "
        "optimiser (lr 0.05) set by hand"
    )
    # Prune ratio around the paper's 0.75 (it also uses 0.5).
    search_space = {"lr": LR_SPACE, "prune_ratio": space.F(0.3, 0.9)}
    task_incremental_only = True

    def __init__(self, config: PackNetConfig, ctx) -> None:
        super().__init__(config, ctx)
        backbone = self.model.backbone
        # Prunable: the weights of every conv / linear layer of the backbone.
        self.prunable: dict[str, nn.Parameter] = {}
        self.bn_modules: dict[str, _BatchNorm] = {}
        for mname, module in backbone.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                self.prunable[f"{mname}.weight"] = module.weight
            elif isinstance(module, _BatchNorm):
                self.bn_modules[mname] = module
        if not self.prunable:
            raise ConfigError(f"packnet: backbone {ctx.backbone!r} has no conv or linear layer to prune")
        bn_params = {id(p) for m in self.bn_modules.values() for p in m.parameters()}
        prunable_ids = {id(p) for p in self.prunable.values()}
        # Everything else in the backbone (conv / linear biases): trained on task 0 only.
        self.shared_fixed = [p for p in backbone.parameters() if id(p) not in bn_params and id(p) not in prunable_ids]
        self.owner = {n: torch.zeros_like(w, dtype=torch.int16) for n, w in self.prunable.items()}
        self.bn_states: list[dict[str, torch.Tensor]] = []  # per finished task, names relative to the backbone
        self.offsets: list[int] = []      # label offset of each task, by position
        self.positions: dict[int, int] = {}  # stream task id -> position
        self.finished = 0                 # tasks whose end_task completed
        self.prune_log: list[dict[str, tuple[int, int]]] = []  # per task: layer -> (free before, pruned)
        # Training-time freezing: where a weight may move, and the values the
        # others are restored to after each optimizer step.
        self._trainable: dict[str, torch.Tensor] | None = None
        self._frozen_values: dict[str, torch.Tensor] | None = None
        self._eval_cache: tuple[int, dict[str, torch.Tensor]] | None = None

    def build_model(self) -> nn.Module:
        return self.prepare_module(PackNetNet(self.new_backbone()))

    # -- training ---------------------------------------------------------------
    def begin_task(self, task: Task, epochs: int, batch_size: int) -> None:
        index = len(self.tasks)
        self.positions[task.task_id] = index
        self.offsets.append(task.label_offset)
        for p in self.shared_fixed:
            p.requires_grad_(index == 0)
        self._eval_cache = None
        # Only the free weights train; everything owned by tasks < index is frozen.
        self._arm({n: o == FREE for n, o in self.owner.items()})
        super().begin_task(task, epochs, batch_size)  # grows the head

    def grow_head(self, task: Task) -> None:
        head = self.model.add_head(task.num_classes)
        self.prepare_module(head)

    def losses(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        # The active head has only this task's classes: shift stream labels to 0..n-1.
        return {"ce": F.cross_entropy(logits, y - self.offsets[self.model.active])}

    def before_optimizer_step(self) -> None:
        for n, p in self.prunable.items():
            if p.grad is not None:
                p.grad.masked_fill_(~self._trainable[n], 0.0)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().train_step(x, y)
        # Weight decay and momentum move weights even with a zero gradient: put
        # the frozen ones back exactly (pruned ones stay exactly zero).
        self._restore_frozen()
        self._eval_cache = None
        return out

    def _arm(self, trainable: dict[str, torch.Tensor]) -> None:
        self._trainable = trainable
        self._frozen_values = {n: w.detach().clone() for n, w in self.prunable.items()}

    @torch.no_grad()
    def _restore_frozen(self) -> None:
        for n, w in self.prunable.items():
            w.copy_(torch.where(self._trainable[n], w, self._frozen_values[n]))

    def phases(self, task: Task, loop_cfg) -> list[Phase]:
        """Train on the free weights (the loop's main phase), then prune and
        retrain the kept ones (paper §3)."""
        index = self.positions[task.task_id]
        cfg = self.config
        retrain = Phase(
            name="retrain",
            batches=lambda batch_size, gen: self._retrain_batches(task, batch_size, gen),
            num_batches=lambda batch_size: count_batches(len(task.train), batch_size),
            epochs=cfg.retrain_epochs,
            params=self.trainable_parameters,
            lr=cfg.lr * cfg.retrain_lr_scale,
            schedule="constant",
            # Off, as the retraining has always run (results unchanged): a short
            # fit of the surviving weights to the pruned network on plain images.
            augment=False,
            # Its own stream per task: the batch order of the retraining never
            # shifts (nor is shifted by) any other random draw of the run.
            generator=purpose_generator(self.ctx.seed, "packnet/retrain", index),
            before=lambda: self._prune_and_arm(index),
        )
        return [self.main_phase(task, loop_cfg), retrain]

    def _prune_and_arm(self, index: int) -> None:
        """Before retraining: prune task ``index``'s free weights, then make the
        kept ones (owner ``index + 1``) the only prunable weights that may move."""
        self.prune(index)
        self._arm({n: o == index + 1 for n, o in self.owner.items()})

    def _retrain_batches(self, task: Task, batch_size: int, generator: torch.Generator):
        """One retraining epoch: the task's training images, shuffled."""
        if count_batches(len(task.train), batch_size) == 0:
            return  # no batch BatchNorm could train on (and no draw from the generator)
        yield from shuffled_batches(task.train.x, task.train.y, batch_size, generator)

    def end_task(self, task: Task) -> None:
        """After the phases: re-estimate BN statistics, then freeze task ``index``.

        BN recalibration stays here rather than becoming a phase: it takes no
        optimiser step (one forward pass per batch, no loss, no gradient), so
        the phase machinery (optimiser, NaN check, augmentation) has nothing to
        do for it, and it must run even when ``retrain_epochs=0``.
        """
        index = self.positions[task.task_id]
        if self.config.bn_recalibrate:
            self._recalibrate_bn(task)
        # Freeze: the kept weights are task ``index``'s from now on (the next
        # begin_task trains only owner == FREE); store its BN state and head.
        self.bn_states.append(self._live_bn_state())
        self.model.heads[index].requires_grad_(False)
        for p in self.shared_fixed:
            p.requires_grad_(False)
        self._trainable = None
        self._frozen_values = None
        self.finished = index + 1
        self._eval_cache = None

    @torch.no_grad()
    def prune(self, index: int) -> None:
        """Per layer: zero and release the prune_ratio smallest-magnitude free
        weights; the others become task ``index``'s (owner code index + 1)."""
        ratio = self.config.prune_ratio
        log: dict[str, tuple[int, int]] = {}
        for n, w in self.prunable.items():
            owner = self.owner[n]
            free = owner == FREE
            free_pos = free.reshape(-1).nonzero().squeeze(1)  # logical (NCHW) order
            n_free = free_pos.numel()
            k = int(math.floor(ratio * n_free + 0.5))  # round half up
            # Exactly k weights: a stable sort breaks magnitude ties by position
            # (a threshold ``|w| <= cutoff`` would prune every tied weight).
            order = torch.argsort(w.detach().abs()[free], stable=True)
            pruned = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
            pruned[free_pos[order[:k]]] = True
            pruned = pruned.view(w.shape)
            w.masked_fill_(pruned, 0.0)
            owner.masked_fill_(free & ~pruned, index + 1)
            log[n] = (n_free, k)
        self.prune_log.append(log)

    @torch.no_grad()
    def _recalibrate_bn(self, task: Task) -> None:
        """Re-estimate the BN running statistics of the pruned, retrained network.

        Pruning 75 % of a layer's weights shifts every later activation, and a
        short retraining updates the running averages (momentum 0.1) only part
        of the way, so task t would be evaluated with statistics of the network
        before pruning. One forward pass in train mode over the task's
        (unaugmented) training images with a cumulative average (momentum None)
        makes them the statistics of the final network. No weight changes.
        """
        x = task.train.x
        bs = self.ctx.batch_size
        n_batches = count_batches(len(x), bs)
        if not self.bn_modules or n_batches == 0:
            return  # nothing to re-estimate, or no batch BN can use
        saved_momentum = {}
        for name, module in self.bn_modules.items():
            saved_momentum[name] = module.momentum
            module.reset_running_stats()
            module.momentum = None
        was_training = self.model.training
        self.model.train()
        try:
            for b in range(n_batches):
                with self.autocast():
                    self.model.backbone(self.normalize(x[b * bs:(b + 1) * bs]))
        finally:
            for name, module in self.bn_modules.items():
                module.momentum = saved_momentum[name]
            self.model.train(was_training)

    def _live_bn_state(self) -> dict[str, torch.Tensor]:
        state = {}
        for mname, module in self.bn_modules.items():
            for key, value in module.state_dict().items():
                state[f"{mname}.{key}"] = value.detach().clone()
        return state

    # -- inference --------------------------------------------------------------
    def _task_overrides(self, index: int) -> dict[str, torch.Tensor]:
        """Backbone tensors of task ``index``: weights owned by tasks <= index
        (all others zero) and task ``index``'s BatchNorm state."""
        if self._eval_cache is not None and self._eval_cache[0] == index:
            return self._eval_cache[1]
        overrides: dict[str, torch.Tensor] = {}
        for n, w in self.prunable.items():
            owner = self.owner[n]
            keep = (owner != FREE) & (owner <= index + 1)
            overrides[n] = w.detach().masked_fill(~keep, 0.0)
        overrides.update(self.bn_states[index])
        self._eval_cache = (index, overrides)
        return overrides

    @torch.no_grad()
    def scores(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """N x num_seen: task ``task_id``'s logits in its columns, -inf elsewhere
        (class-incremental prediction is not defined for PackNet)."""
        if task_id is None:
            raise ValueError("packnet is task-incremental: scores() needs the task id")
        if task_id not in self.positions:
            raise ValueError(f"packnet: task {task_id} has not been trained")
        index = self.positions[task_id]
        with self.eval_mode():
            if index < self.finished:
                feats = functional_call(self.model.backbone, self._task_overrides(index), (x,))
            else:  # the task being trained (not yet pruned): the live network
                feats = self.model.backbone(x)
            logits = self.model.heads[index](feats)
        out = torch.full((len(x), self.num_seen), float("-inf"), dtype=logits.dtype, device=logits.device)
        lo = self.offsets[index]
        out[:, lo:lo + logits.shape[1]] = logits
        return out

    # -- reporting ----------------------------------------------------------------
    def owned_counts(self) -> tuple[list[int], int, int]:
        """(weights owned by each finished task, free weights, all prunable weights)."""
        owned = [0] * self.finished
        free = total = 0
        for owner in self.owner.values():
            counts = torch.bincount(owner.reshape(-1).long(), minlength=self.finished + 1).tolist()
            free += counts[FREE]
            for k in range(self.finished):
                owned[k] += counts[k + 1]
            total += owner.numel()
        return owned, free, total

    def num_parameters(self) -> int:
        # Backbone + every head + the stored BN affine parameters of all tasks
        # but one (the live BN module holds one copy). Masks are bookkeeping:
        # see extra_report's mask_bits_per_weight.
        bn_affine = sum(p.numel() for m in self.bn_modules.values() for p in m.parameters())
        return count_parameters(self.model) + max(len(self.bn_states) - 1, 0) * bn_affine

    def extra_report(self) -> dict[str, Any]:
        owned, free, total = self.owned_counts()
        pruned = []
        for log in self.prune_log:
            before = sum(v[0] for v in log.values())
            pruned.append(sum(v[1] for v in log.values()) / before if before else 0.0)
        return {
            "prunable_weights": total,
            "owned_fraction": [c / total for c in owned],
            "free_fraction": free / total,
            "pruned_fraction_of_free": pruned,
            "mask_bits_per_weight": math.ceil(math.log2(self.finished + 1)) if self.finished else 0,
            "batchnorm": "per_task" + (", recalibrated after pruning" if self.config.bn_recalibrate else ""),
            "biases": "trained on task 0, then fixed",
        }

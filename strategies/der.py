"""DER: Dynamically Expandable Representation (Yan, Xie & He, CVPR 2021).

Not "Dark Experience Replay". At task t (paper §3.2):

- a NEW feature extractor F_t is added (a fresh ``new_backbone()``, or a copy of
  F_{t-1} with ``init_from_previous``, as PyCIL does); the old extractors
  F_1..F_{t-1} are frozen: ``requires_grad=False`` and kept in eval mode even while
  the model trains, so their BatchNorm running statistics never change;
- the representation is the concatenation u = [F_1(x), ..., F_t(x)] and the
  classifier H_t over all seen classes is rebuilt on the enlarged feature size:
  the old weights are copied into the block (old classes x old features), the
  rest (new features, new classes) keeps nn.Linear's fresh initialisation (as
  in PyCIL);
- an auxiliary classifier H_t^a on F_t's features only, over the new classes plus
  one "old" class (all old classes merged), trains F_t to learn features that
  separate the new classes from the old ones. Loss (Eq. 6):

      L_ER = CE(H_t(u), y) + aux_weight * CE(H_t^a(F_t(x)), y^a)

  with y^a = y - offset + 1 for a new class and 0 for an old one. There is no
  old class in the first task, so the first task has no auxiliary head/loss.
  The auxiliary head is discarded after the task (used only for training);
- training data: rehearsal memory + new task in BALANCED batches: each batch is
  half new-task images, half memory images (min(batch/2, |memory|) memory images,
  drawn by cycling through reshuffled passes of the memory, so the memory is
  oversampled evenly); an epoch is one pass over the new task;
- classifier learning (§3.3): after the representation stage, the classifier
  alone is retrained for ``balance_epochs`` on a class-balanced set: the memory
  after its update, i.e. the old exemplars plus an equal number per class from the
  new task. The head is fine-tuned (``balance_reinit=False``, default: it starts
  from the representation stage's head) or re-initialised (``True``), with SGD at
  ``balance_lr`` (constant) and no augmentation.

The two stages are the task's two training phases (``phases``,
``strategies/phases.py``), both run by the one loop: ``"train"`` (the
representation, on balanced batches) and ``"balance"`` (the classifier, on the
memory). The balance phase's before-step closes the representation stage --
every extractor frozen, the auxiliary head dropped, the memory updated from the
trained model -- so it runs on every task, with zero epochs when there is
nothing to re-balance (first task, ``balance_epochs=0``).

Memory (paper and the course notebook: 10 images per class): ``memory_per_class``
exemplars per seen class, so the memory grows with the classes; with
``memory_per_class=0`` the fixed total ``memory`` is split evenly over the seen
classes as in the other rehearsal methods. Selection: ``selection`` (random, or
herding on the concatenated features).

Out of scope: the paper's channel-level mask-based pruning of F_t (§3.4); the
model therefore grows by one full backbone per task (``extra_report``).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from datasets.stream import Task
from core import space
from strategies.base import LR_SPACE, count_batches, register, shuffled_batches
from strategies.phases import Phase
from strategies.rng import purpose_generator
from core.config import bounded
from strategies.memory import update_balanced_memory
from strategies.networks import count_parameters
from strategies.rehearsal import RehearsalConfig, RehearsalStrategy


class DERNet(nn.Module):
    """Extractors F_1..F_t (all but the newest frozen), a classifier over the
    concatenated features and, while a task trains, an auxiliary head on F_t.

    ``forward`` returns the logits over the seen classes; in training mode it also
    leaves the auxiliary logits in ``last_aux_logits`` (None without an auxiliary
    head or in eval mode), so the strategy's ``losses`` can use them without a
    second pass through F_t.
    """

    def __init__(self) -> None:
        super().__init__()
        self.extractors = nn.ModuleList()
        self.head: nn.Linear | None = None
        self.aux_head: nn.Linear | None = None
        self.num_frozen = 0  # extractors[:num_frozen] are frozen and stay in eval mode
        self.last_aux_logits: torch.Tensor | None = None

    @property
    def out_dim(self) -> int:
        return sum(e.out_dim for e in self.extractors)

    @property
    def backbone(self) -> "DERNet":
        # base.extract_features reads ``module.backbone.out_dim`` for an empty input.
        return self

    @property
    def num_classes(self) -> int:
        return 0 if self.head is None else self.head.out_features

    def freeze_all(self) -> None:
        for e in self.extractors:
            e.requires_grad_(False)
        self.num_frozen = len(self.extractors)
        self.train(self.training)

    def expand(self, extractor: nn.Module, num_new_classes: int, with_aux: bool) -> None:
        """Freeze the current extractors, add ``extractor``, rebuild the classifier."""
        self.freeze_all()
        device = next(extractor.parameters()).device
        old_head, old_dim, old_classes = self.head, self.out_dim, self.num_classes
        self.extractors.append(extractor)
        head = nn.Linear(self.out_dim, old_classes + num_new_classes).to(device)
        if old_head is not None:
            with torch.no_grad():
                head.weight[:old_classes, :old_dim].copy_(old_head.weight)
                head.bias[:old_classes].copy_(old_head.bias)
        self.head = head
        self.aux_head = nn.Linear(extractor.out_dim, num_new_classes + 1).to(device) if with_aux else None
        self.train(self.training)

    def train(self, mode: bool = True) -> "DERNet":
        super().train(mode)
        # Frozen extractors always run in eval mode: their BatchNorm layers use and
        # keep their running statistics, so the old representation is bit-identical.
        for e in self.extractors[: self.num_frozen]:
            e.train(False)
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([e(x) for e in self.extractors], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [e(x) for e in self.extractors]
        logits = self.head(torch.cat(feats, 1))
        use_aux = self.training and self.aux_head is not None
        self.last_aux_logits = self.aux_head(feats[-1]) if use_aux else None
        return logits


@dataclasses.dataclass
class DERConfig(RehearsalConfig):
    memory_per_class: int = bounded(10, min=0, max=1_000_000,
                                    help="exemplars per seen class (paper/notebook: 10); 0 = use the fixed total `memory`")
    aux_weight: float = bounded(1.0, min=0.0, max=100.0, help="weight of the auxiliary new+1 loss (paper Eq. 6)")
    balance_epochs: int = bounded(2, min=0, max=1000, help="classifier re-balancing epochs after each task (0 = off)")
    balance_lr: float = bounded(0.01, min=1e-6, max=10.0, help="SGD learning rate of the classifier re-balancing (always SGD)")
    balance_reinit: bool = bounded(False, help="re-initialise the classifier before re-balancing (else fine-tune it)")
    init_from_previous: bool = bounded(False, help="start each new extractor from the previous one (PyCIL) instead of fresh")


@register
class DER(RehearsalStrategy):
    name = "der"
    config_class = DERConfig
    defaults_source = (
        "Yan et al. 2021 and the course notebook: 10 exemplars per class, auxiliary loss weight 1 (Eq. 6); 2 "
        "re-balancing epochs at lr 0.01 and the optimiser (lr 0.05) set by hand"
    )
    # Exemplars per class on a log scale around the paper's and the notebook's
    # 10; the auxiliary loss weight from off (0) to twice the default 1.
    search_space = {"lr": LR_SPACE, "memory_per_class": space.I(2, 50, log=True), "aux_weight": space.F(0.0, 2.0)}

    def build_model(self) -> nn.Module:
        return self.prepare_module(DERNet())

    def validate_against(self, stream) -> None:
        if self.config.memory_per_class == 0:  # `memory` is used only in the fixed-total mode
            super().validate_against(stream)

    # -- growth -----------------------------------------------------------------
    def grow_head(self, task: Task) -> None:
        """Called by base ``begin_task``: add F_t, freeze the rest, rebuild the heads."""
        extractor = self.prepare_module(self.new_backbone())
        if self.config.init_from_previous and len(self.model.extractors) > 0:
            extractor.load_state_dict(self.model.extractors[-1].state_dict())
        old_classes = self.num_seen - task.num_classes
        self.model.expand(extractor, task.num_classes, with_aux=old_classes > 0)

    # -- balanced batches ---------------------------------------------------------
    def _split(self, batch_size: int) -> tuple[int, int]:
        """(new, memory) images per batch: half and half as far as the memory allows."""
        n_mem = min(batch_size // 2, len(self.memory))
        return batch_size - n_mem, n_mem

    def num_train_batches(self, task: Task, batch_size: int) -> int:
        n_new, n_mem = self._split(batch_size)
        if n_mem == 0:
            return count_batches(len(task.train), batch_size)
        return math.ceil(len(task.train) / n_new)

    def train_batches(self, task: Task, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n_new, n_mem = self._split(batch_size)
        if n_mem == 0:  # first task (or no memory): plain shuffled batches
            yield from shuffled_batches(task.train.x, task.train.y, batch_size, generator)
            return
        mem_x, mem_y = self.memory.data()
        x, y = task.train.x, task.train.y
        order = torch.randperm(len(x), generator=generator).to(x.device)
        batches = self.num_train_batches(task, batch_size)
        # Memory indices: consecutive reshuffled passes, so every exemplar is used
        # equally often (+-1) within an epoch.
        passes = math.ceil(batches * n_mem / len(mem_x))
        mem_order = torch.cat([torch.randperm(len(mem_x), generator=generator) for _ in range(passes)]).to(x.device)
        used = 0
        for b in range(batches):
            idx = order[b * n_new:(b + 1) * n_new]
            k = min(n_mem, len(idx))  # a shorter last batch stays half/half
            midx = mem_order[used:used + k]
            used += k
            yield torch.cat([x[idx], mem_x[midx]]), torch.cat([y[idx], mem_y[midx]])

    # -- losses -------------------------------------------------------------------
    def losses(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = {"ce": F.cross_entropy(logits.float(), y)}
        aux = self.model.last_aux_logits
        self.model.last_aux_logits = None  # do not keep the graph alive
        if aux is not None and self.config.aux_weight > 0:
            offset = self.tasks[-1].label_offset
            aux_y = torch.where(y >= offset, y - offset + 1, torch.zeros_like(y))
            terms["aux"] = self.config.aux_weight * F.cross_entropy(aux.float(), aux_y)
        return terms

    # -- after the representation stage: classifier re-balancing ---------------------
    def phases(self, task: Task, loop_cfg) -> list[Phase]:
        """The representation stage (the loop's main phase), then the classifier
        re-balancing on the memory (paper §3.3)."""
        cfg = self.config
        # Nothing to re-balance in the first task: it has no old classes.
        epochs = cfg.balance_epochs if len(self.tasks) > 1 else 0
        balance = Phase(
            name="balance",
            batches=self._balance_batches,
            num_batches=lambda batch_size: count_batches(len(self.memory), batch_size),
            epochs=epochs,
            params=lambda: list(self.model.head.parameters()),
            lr=cfg.balance_lr,
            schedule="constant",
            # SGD whatever the main phase's optimiser: balance_lr is an absolute
            # SGD rate (0.01), and the same number would be another step size
            # under Adam. PackNet's retraining needs no such pin: its rate is a
            # fraction of the config's lr, so it follows the config's optimiser.
            optimizer="sgd",
            # Off, as the re-balancing has always run (results unchanged): it only
            # re-fits the head to frozen features on the few stored exemplars.
            augment=False,
            # Its own stream per task: the batch order of the re-balancing never
            # shifts (nor is shifted by) any other random draw of the run.
            generator=purpose_generator(self.ctx.seed, "der/balance", len(self.tasks) - 1),
            before=lambda: self._close_representation(task, reinit=cfg.balance_reinit and epochs > 0),
        )
        return [self.main_phase(task, loop_cfg), balance]

    def _close_representation(self, task: Task, reinit: bool) -> None:
        """Before re-balancing: F_t becomes final, the memory takes the new classes,
        and the head is optionally re-initialised."""
        self.model.aux_head = None  # H^a only shapes F_t during its task
        self.model.freeze_all()  # F_t is final: frozen (and eval-mode) from now on
        self.update_memory(task)
        # A memory of one image gives no batch (BatchNorm-safe batches need two),
        # so there is no re-balancing and the head is left as trained.
        if reinit and len(self.memory) > 1:
            head = self.model.head
            self.model.head = nn.Linear(head.in_features, head.out_features).to(head.weight.device)

    def _balance_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch over the class-balanced memory. Every extractor is frozen and
        in eval mode, so ``train_step`` moves the head only."""
        stored = self.memory.data()
        if stored is None or len(stored[0]) < 2:
            return  # no batch (and no draw from the generator)
        yield from shuffled_batches(stored[0], stored[1], batch_size, generator)

    def update_memory(self, task: Task) -> None:
        per_class = self.config.memory_per_class
        total = per_class * self.num_seen if per_class > 0 else self.config.memory

        def images_of(label: int) -> torch.Tensor:
            return task.train.x[task.train.y == label]
        update_balanced_memory(self.memory, total, list(task.labels), images_of, self.select_exemplars)

    # -- reporting ----------------------------------------------------------------
    def extra_report(self) -> dict[str, Any]:
        return {
            "extractors": len(self.model.extractors),
            "params_per_task": [count_parameters(e) for e in self.model.extractors],
            "feature_dim": self.model.out_dim,
            "classifier_params": count_parameters(self.model.head) if self.model.head is not None else 0,
        }

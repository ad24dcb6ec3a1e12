"""iCaRL: incremental Classifier and Representation Learning (Rebuffi et al., CVPR 2017).

- Representation learning (Alg. 3): sigmoid outputs trained with binary
  cross-entropy over all seen classes; for the old classes the targets are the
  previous network's sigmoid outputs (distillation), for the new ones one-hot.
  Training data = new task + exemplar memory.
- Exemplar management (Alg. 4-5): a fixed total memory K, m = K / n_seen per class;
  new classes chosen by herding on L2-normalised features, old classes shrunk to
  their first m.
- Classification (Alg. 1): nearest mean of exemplars -- class means of the
  normalised exemplar features (re-normalised), predict the closest mean.
  ``classifier="cnn"`` uses the network's sigmoid outputs instead (an ablation).

No horizontal flip is added to the mean computation (the paper's CIFAR recipe
flips; traffic signs must not be flipped).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from datasets.stream import Task
from strategies.base import register
from strategies.phases import SCHEDULES
from core import space
from core.config import ConfigError, bounded
from strategies.distill import Teacher
from strategies.rehearsal import MEMORY_SPACE, RehearsalConfig, RehearsalStrategy


@dataclasses.dataclass
class ICaRLConfig(RehearsalConfig):
    # lr 0.1 with the paper's multistep schedule (and no augmentation, ICaRL.loop_defaults):
    # chosen on the validation splits of GTSRB and digits (bench/README.md, "iCaRL's
    # training knobs"); the former lr 0.5 with a cosine schedule barely learned digits.
    lr: float = bounded(0.1, min=1e-6, max=10.0, help="SGD learning rate (iCaRL's paper uses 2.0 on CIFAR-100)")
    lr_schedule: str = bounded("multistep", choices=SCHEDULES,
                               help="per-phase learning-rate schedule (iCaRL: multistep, lr / 5 at 49/70 and 63/70)")
    weight_decay: float = bounded(1e-5, min=0.0, max=0.1, help="L2 weight decay (paper: 1e-5)")
    selection: str = bounded("herding", choices=("random", "herding"), help="exemplar selection (paper: herding)")
    classifier: str = bounded("nme", choices=("nme", "cnn"), help="nearest-mean-of-exemplars or network outputs")


@register
class ICaRL(RehearsalStrategy):
    name = "icarl"
    config_class = ICaRLConfig
    defaults_source = (
        "Rebuffi et al. 2017: herding selection, nearest-mean classifier, weight decay 1e-5, multistep "
        "schedule; lr 0.1 and no augmentation chosen on the GTSRB and digits validation splits (bench/README.md, "
        "iCaRL's training knobs); memory 200 from the course notebook"
    )
    # On the 5-epoch GTSRB and 8-epoch digits protocols random crops cost iCaRL
    # 5-15 points of final validation accuracy (bench/README.md); a dataset run
    # for many epochs (CIFAR-100's 70) may want them back: --augment crop+flip.
    loop_defaults = {"augment": "none"}
    # Learning rate wider than the other methods': the iCaRL PyTorch
    # reimplementation found it the dominant knob with good values 0.1 .. 2 (the
    # paper uses 2.0), and digits wants 0.1 where GTSRB's wide search found 0.3-0.9.
    # Weight decay on a log scale around the paper's 1e-5, up to 1e-4: every trial
    # above 4e-4 in the wide GTSRB search ended below 40 % (bench/README.md).
    search_space = {"lr": space.F(0.01, 4.0, log=True), "memory": MEMORY_SPACE,
                    "weight_decay": space.F(1e-6, 1e-4, log=True)}

    def __init__(self, config, ctx) -> None:
        super().__init__(config, ctx)
        self.teacher = Teacher()
        self.class_means: torch.Tensor | None = None  # n_seen x D, unit norm

    def losses(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        targets = F.one_hot(y, num_classes=logits.shape[1]).float()
        if self.teacher.ready:
            targets = self.teacher.sigmoid_targets(targets, x)
        return {"bce": F.binary_cross_entropy_with_logits(logits.float(), targets)}

    def end_task(self, task: Task) -> None:
        self.update_memory(task)
        self.teacher.snapshot(self.model)
        self.class_means = self.compute_class_means()

    def compute_class_means(self) -> torch.Tensor:
        means = []
        for label in range(self.num_seen):
            feats = F.normalize(self.extract_features(self.memory.class_images(label)), dim=1)
            means.append(F.normalize(feats.mean(0), dim=0))
        return torch.stack(means)

    @torch.no_grad()
    def scores(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        if self.config.classifier == "cnn" or self.class_means is None:
            return self.model(x)[:, : self.num_seen]
        feats = F.normalize(self.model.features(x).float(), dim=1)
        # Negative distance: higher score = closer mean.
        return -torch.cdist(feats, self.class_means[: self.num_seen])

    def validate_against(self, stream) -> None:
        super().validate_against(stream)
        if self.config.memory < stream.num_classes and self.config.classifier == "nme":
            raise ConfigError(f"icarl: memory={self.config.memory} leaves some of the {stream.num_classes} classes "
                              "without an exemplar; the nearest-mean classifier needs at least one per class")

"""Exemplar memory: a class-indexed store of uint8 images with a total budget.

- Budget split (iCaRL, Rebuffi et al. 2017, Alg. 4-5; the course notebook's
  rehearsal): a fixed total of K images split evenly over the classes seen so
  far, m = K / n_seen per class; when new classes arrive each old class keeps its
  first m exemplars (the selection order is a priority order).
- Selections: ``random`` (notebook) and ``herding`` (iCaRL Alg. 4): iteratively
  pick the sample that moves the running mean of the chosen features closest to
  the class mean of the L2-normalised features.
"""
from __future__ import annotations

import torch


def per_class_budget(total: int, num_classes: int) -> list[int]:
    """Split ``total`` slots over ``num_classes`` classes as evenly as possible;
    the first ``total % num_classes`` classes get one more, so the sum is exact."""
    if num_classes <= 0:
        return []
    base, extra = divmod(total, num_classes)
    return [base + (1 if i < extra else 0) for i in range(num_classes)]


def herding_order(features: torch.Tensor, m: int) -> torch.Tensor:
    """Indices of ``m`` samples chosen by herding (iCaRL Alg. 4), in pick order.

    features: N x D (L2-normalised inside). Each step picks
    argmin_i || mu - (sum_chosen + f_i) / (k + 1) ||, never the same sample twice.
    """
    f = torch.nn.functional.normalize(features.float(), dim=1)
    n = f.shape[0]
    m = min(m, n)
    mu = f.mean(0)
    chosen: list[int] = []
    running = torch.zeros_like(mu)
    available = torch.ones(n, dtype=torch.bool, device=f.device)
    for k in range(m):
        candidate_means = (running[None, :] + f) / (k + 1)
        dist = (mu[None, :] - candidate_means).norm(dim=1)
        dist[~available] = float("inf")
        i = int(torch.argmin(dist))
        chosen.append(i)
        available[i] = False
        running += f[i]
    return torch.tensor(chosen, dtype=torch.long)


class ClassMemory:
    """Per-class exemplars (uint8 images), kept in priority order."""

    def __init__(self) -> None:
        self._images: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return sum(len(x) for x in self._images.values())

    @property
    def classes(self) -> list[int]:
        return sorted(self._images)

    def class_images(self, label: int) -> torch.Tensor:
        return self._images[label]

    def counts(self) -> dict[int, int]:
        return {c: len(x) for c, x in sorted(self._images.items())}

    def set_class(self, label: int, images: torch.Tensor) -> None:
        self._images[label] = images

    def shrink(self, budgets: dict[int, int]) -> None:
        """Keep the first ``budgets[c]`` exemplars of each class (priority order)."""
        for c, keep in budgets.items():
            if c in self._images:
                self._images[c] = self._images[c][:keep]

    def data(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """All exemplars as (images, labels), or None when empty."""
        if not self._images or len(self) == 0:
            return None
        xs, ys = [], []
        for c, x in sorted(self._images.items()):
            xs.append(x)
            ys.append(torch.full((len(x),), c, dtype=torch.long, device=x.device))
        return torch.cat(xs), torch.cat(ys)

    def state_dict(self) -> dict:
        return {"images": {int(c): x.cpu() for c, x in self._images.items()}}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self._images = {int(c): x.to(device) for c, x in state["images"].items()}


def update_balanced_memory(
    memory: ClassMemory,
    total: int,
    new_classes: list[int],
    images_of: "callable",
    select: "callable",
) -> None:
    """Rebalance ``memory`` to ``total`` slots over old + new classes.

    ``images_of(c)`` returns class c's training images; ``select(images, m)``
    returns the indices of the m exemplars to keep, in priority order. Old
    classes are shrunk first so the budget is never exceeded, even transiently.
    """
    all_classes = memory.classes + [c for c in new_classes if c not in memory.classes]
    budgets = dict(zip(all_classes, per_class_budget(total, len(all_classes))))
    memory.shrink({c: budgets[c] for c in memory.classes})
    for c in new_classes:
        images = images_of(c)
        keep = select(images, budgets[c])
        memory.set_class(c, images[keep])

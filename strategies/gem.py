"""GEM: Gradient Episodic Memory (Lopez-Paz & Ranzato, NeurIPS 2017), class-incremental.

Each past task k keeps an episodic memory M_k. At every step, with g the gradient
of the current batch loss and g_k the gradient of the loss on (a sample of) M_k,
GEM requires the update not to increase any past task's memory loss to first
order, <g~, g_k> >= 0 (Eq. 10-11). When some <g, g_k> < 0, g is replaced by the
closest gradient that satisfies the constraints (Eq. 11):

    primal   min_z 1/2 ||z - g||^2   s.t.  G z >= 0           (G: rows g_k)
    dual     min_v 1/2 v^T G G^T v + g^T G^T v   s.t.  v >= 0   (Eq. 13)
             g~ = G^T v + g

``project_gradient`` solves the dual with ``quadprog`` (Goldfarb-Idnani) in
float64, with a tiny ridge on G G^T so it is strictly positive definite.

The margin ``memory_strength`` (m) has two precise semantics (``margin_type``):

- ``"dual"`` (default; exactly the reference code ``project2cone2``:
  ``quadprog.solve_qp(P, q, I, zeros + margin)``): the margin is the lower bound
  of the DUAL variables, v >= m. Substituting v = m + u (u >= 0) shows this is the
  Euclidean projection of the shifted gradient g + m * sum_k g_k onto the cone
  {z : G z >= 0}. So after projection G g~ >= 0 (not >= m): the margin pushes the
  update further towards every past task's gradient, it is not a bound on the dot
  products.
- ``"primal"``: the margin bounds the dot products, G g~ >= m, i.e. the projection
  of g onto {z : G z >= m} (dual: linear term G g - m, v >= 0). Scale-dependent
  (dot products of gradients have units of |g|^2), hence not the default.

As in the reference code, the projection runs only when some <g, g_k> < 0;
otherwise the step uses g unchanged (in both margin types).

Class-incremental choices (the paper is task-incremental with per-task output
masks; a GEM reimplementation used CIFAR-100 in 5 tasks of 20 classes):

- the current loss is cross-entropy over all classes seen so far;
- a past task's memory loss is cross-entropy over all seen classes
  (``memory_loss_classes="seen"``, the quantity class-IL evaluation measures) or
  over that task's own classes (``"task"``, the paper's masked loss);
- memory: a fixed total budget ``memory`` split evenly over the past TASKS (as the
  paper keeps one memory per task), and within a task evenly over its classes;
  random choice (``selection``), uint8 images with stream labels. When a task
  arrives the older task memories shrink to their first (random-order) images.
  The memory is used only for the constraints, never as training data (GEM is not
  replay);
- to bound cost, each step uses at most ``memory_batch`` random images of each
  past task's memory for g_k (the paper uses the whole memory);
- g and g_k are the flattened gradients of all trainable parameters, i.e. the
  backbone and the head rows of the classes seen so far (rows of unseen classes
  do not exist yet). Weight decay and momentum are applied by SGD after the
  projection, to the projected loss gradient.
- the memory forward passes run in training mode (batch statistics, as in the
  reference code), so BatchNorm running statistics also see memory images.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import quadprog
import torch
import torch.nn.functional as F

from datasets.stream import Task
from strategies.base import register
from core import space
from core.config import ConfigError, bounded
from strategies.memory import per_class_budget
from strategies.rehearsal import MEMORY_SPACE, RehearsalConfig, RehearsalStrategy
from strategies.rng import purpose_generator

RIDGE = 1e-8  # relative to the mean diagonal of G G^T (scale-free)


def project_gradient(g: torch.Tensor, G: torch.Tensor, margin: float = 0.0, margin_type: str = "dual") -> torch.Tensor:
    """GEM's projected gradient g~ (float64, on g's device); see the module docstring.

    g: (d,) proposed gradient; G: (t, d) past-task gradients (rows).

    - ``margin_type="primal"``: g~ = argmin_z 1/2||z - g||^2 s.t. G z >= margin.
    - ``margin_type="dual"`` (reference code): dual variables bounded below by
      ``margin``; g~ = argmin_z 1/2||z - (g + margin * G^T 1)||^2 s.t. G z >= 0.

    Only t x t and t-sized quantities go to the host; g~ = g + G^T v is formed on
    g's device. The ridge makes the results exact up to ~1e-8 relative.
    """
    if margin_type not in ("dual", "primal"):
        raise ValueError(f"margin_type must be 'dual' or 'primal', got {margin_type!r}")
    gd = g.detach().reshape(-1).double()
    Gd = G.detach().reshape(G.shape[0], -1).double().to(gd.device)
    t = Gd.shape[0]
    if t == 0:
        return gd
    P = (Gd @ Gd.T).cpu().numpy()
    P = 0.5 * (P + P.T)
    Gg = (Gd @ gd).cpu().numpy()
    if margin_type == "dual":
        # Reference: solve_qp(P, -G g, I, margin): min 1/2 v'Pv + (Gg)'v, v >= margin.
        a, b = -Gg, np.full(t, float(margin))
    else:
        # min 1/2 v'Pv + (Gg - margin)'v, v >= 0  <=>  primal G z >= margin.
        a, b = float(margin) - Gg, np.zeros(t)
    scale = max(float(np.trace(P)) / t, 1e-30)
    ridge = RIDGE * scale
    for _ in range(6):
        try:
            v = quadprog.solve_qp(P + ridge * np.eye(t), a, np.eye(t), b)[0]
            break
        except ValueError:  # not positive definite numerically: strengthen the ridge
            ridge *= 100.0
    else:
        raise RuntimeError("GEM: the dual QP could not be solved (G G^T is numerically singular)")
    return gd + Gd.T @ torch.as_tensor(v, dtype=torch.float64, device=gd.device)


@dataclasses.dataclass
class GEMConfig(RehearsalConfig):
    # lr 0.01: chosen on the validation splits of GTSRB and digits (bench/README.md,
    # "EWC and GEM: defaults chosen on validation"); at the former lr 0.05 the
    # projected steps still overwrote the old classes on digits (59 % forgetting).
    lr: float = bounded(0.01, min=1e-6, max=10.0, help="SGD learning rate (GEM's projection is first-order: small steps)")
    memory: int = bounded(200, min=0, max=10_000_000, help="total episodic memory, split evenly over past tasks")
    memory_strength: float = bounded(0.5, min=0.0, max=100.0, help="GEM margin (reference default 0.5); see margin_type")
    margin_type: str = bounded("dual", choices=("dual", "primal"),
                               help="dual: v >= margin as in the reference code; primal: G g~ >= margin")
    memory_batch: int = bounded(64, min=1, max=1_000_000, help="memory images per past task per step for g_k")
    memory_loss_classes: str = bounded("seen", choices=("seen", "task"),
                                       help="past-task loss over all seen classes or over that task's classes")


@register
class GEM(RehearsalStrategy):
    name = "gem"
    config_class = GEMConfig
    defaults_source = (
        "Lopez-Paz & Ranzato 2017 and its reference code: margin 0.5, the dual QP; memory 200 from the course "
        "notebook; lr 0.01 chosen on the GTSRB and digits validation splits (bench/README.md, EWC and GEM "
        "defaults); 64 memory images per past task per step set by hand"
    )
    # The margin from 0 (plain projection) to twice the reference code's 0.5; lr up
    # to 0.1, past the collapse the validation splits showed from 0.02-0.05 on.
    search_space = {"lr": space.F(1e-3, 0.1, log=True), "memory": MEMORY_SPACE, "memory_strength": space.F(0.0, 1.0)}

    def __init__(self, config, ctx) -> None:
        super().__init__(config, ctx)
        self._sample_gen = purpose_generator(ctx.seed, "gem/sample")  # which memory images give g_k each step
        self._task_memory: list[tuple[torch.Tensor, torch.Tensor, range]] = []  # per past task: x, y, labels
        self.constrained_steps = 0  # steps with at least one past task
        self.projected_steps = 0  # steps where some <g, g_k> < 0

    def validate_against(self, stream) -> None:
        super().validate_against(stream)
        past_tasks = stream.num_tasks - 1
        if 0 < self.config.memory < 2 * past_tasks:
            raise ConfigError(f"gem: memory={self.config.memory} leaves some of the {past_tasks} past tasks fewer "
                              "than 2 images (0 disables the memory)")

    # GEM trains on the current task only; the memory enters through constraints.
    def training_data(self, task: Task) -> tuple[torch.Tensor, torch.Tensor]:
        return task.train.x, task.train.y

    def end_task(self, task: Task) -> None:
        self.update_memory(task)

    def update_memory(self, task: Task) -> None:
        """Total budget split evenly over tasks, then over each task's classes."""
        budgets: dict[int, int] = {}
        for t, b in zip(self.tasks, per_class_budget(self.config.memory, len(self.tasks))):
            budgets.update(zip(t.labels, per_class_budget(b, t.num_classes)))
        self.memory.shrink({c: budgets[c] for c in self.memory.classes})
        for c in task.labels:
            images = task.train.x[task.train.y == c]
            self.memory.set_class(c, images[self.select_exemplars(images, budgets[c])])
        # One contiguous tensor per task, so a step only indexes.
        self._task_memory = []
        for t in self.tasks:
            parts = [(c, self.memory.class_images(c)) for c in t.labels if c in self.memory.classes]
            x = torch.cat([xc for _, xc in parts])
            y = torch.cat([torch.full((len(xc),), c, dtype=torch.long, device=x.device) for c, xc in parts])
            self._task_memory.append((x, y, t.labels))

    def _flat_grad(self, params: list[torch.nn.Parameter]) -> torch.Tensor:
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params])

    def _memory_gradient(self, params, x, y, labels: range) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(self.normalize(x))[:, : self.num_seen]
        if self.config.memory_loss_classes == "task":
            loss = F.cross_entropy(logits[:, labels.start:labels.stop].float(), y - labels.start)
        else:
            loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        return self._flat_grad(params)

    def before_optimizer_step(self) -> None:
        # A task memory of one image is skipped: BatchNorm cannot take a training-mode
        # batch of one (validate_against rejects budgets that would leave one).
        past = [m for m in self._task_memory[: len(self.tasks) - 1] if len(m[0]) > 1]
        if not past:
            return
        params = self.trainable_parameters()
        g = self._flat_grad(params)
        rows = []
        for x, y, labels in past:
            if len(x) > self.config.memory_batch:
                idx = torch.randperm(len(x), generator=self._sample_gen)[: self.config.memory_batch].to(x.device)
                x, y = x[idx], y[idx]
            rows.append(self._memory_gradient(params, x, y, labels))
        G = torch.stack(rows)
        self.constrained_steps += 1
        if bool((G @ g < 0).any()):  # one host sync per step; quadprog runs on the host anyway
            self.projected_steps += 1
            g = project_gradient(g, G, self.config.memory_strength, self.config.margin_type)
        # Write g (projected or not) back: the memory backward passes overwrote .grad.
        offset = 0
        for p in params:
            n = p.numel()
            if p.grad is None:
                p.grad = torch.empty_like(p)  # keeps p's memory format (channels_last)
            p.grad.copy_(g[offset:offset + n].view(p.shape))
            offset += n

    def extra_report(self) -> dict[str, Any]:
        return {"constrained_steps": self.constrained_steps, "projected_steps": self.projected_steps,
                "memory_per_task": [len(m[0]) for m in self._task_memory]}


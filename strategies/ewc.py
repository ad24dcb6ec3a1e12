"""Elastic Weight Consolidation (Kirkpatrick et al., PNAS 2017) and Online EWC
(Schwarz et al., ICML 2018, "Progress & Compress").

After task k the parameters theta*_k are stored with the diagonal of the Fisher
information F_k, and later tasks train with EWC Eq. 3:

    loss = CE + (lambda / 2) * sum_k sum_i F_k,i (theta_i - theta*_k,i)^2

- ``mode="separate"``: one (F_k, theta*_k) pair per past task, penalties summed
  (Eq. 3 with one term per task, as the paper does for more than two tasks).
- ``mode="online"`` (Schwarz et al. 2018, Eq. 8-9): a single running Fisher
  F <- gamma * F + F_k and a single anchor theta* <- theta*_k (the latest), so the
  cost does not grow with the number of tasks; gamma < 1 forgets old constraints.

Fisher estimate (documented choice): the diagonal EMPIRICAL Fisher,
F_i = mean_n (d log p(y_n | x_n; theta) / d theta_i)^2 with y_n the TRUE label,
from PER-SAMPLE gradients (``torch.func.vmap`` over ``grad``, in chunks sized to
the parameter count), on at most ``fisher_samples`` un-augmented training images
of the task (a seeded random subset). Per-sample (not mini-batch) gradients are
what the definition asks for: squaring a batch-mean gradient would shrink F by
about the batch size and change the meaning of lambda with the batch size. The
network is in eval mode for it, so BatchNorm uses its running statistics (a
single sample's batch statistics would be degenerate). log p is the softmax over
all classes seen so far.

What is penalised: every backbone parameter and, of the growing linear head, only
the rows (weights + biases) of the classes that existed when the anchor was taken
-- new classes' rows have no anchor and train freely. ``penalize_head=False``
leaves the whole head unconstrained. BatchNorm running statistics are buffers,
not parameters, and are not constrained (they drift with the new data).

No Fisher is computed after the stream's last task (nothing trains after it).
Large ``ewc_lambda`` with SGD can be unstable (the penalty's curvature
lambda * F_i times the learning rate exceeds 2 (1 + momentum) for the largest
F_i); the loop then reports the run as diverged, which is the honest outcome of
that setting. The default optimiser is therefore Adam (lr 1e-3, the optimiser
of van de Ven et al. 2019's class-incremental EWC baselines), whose per-parameter
step size stays bounded whatever the penalty's curvature: SGD at lr 0.05 with
lambda 100 diverged on the validation splits of both GTSRB and the embedded
digits (bench/README.md, "EWC and GEM: defaults chosen on validation"). In
class-incremental learning EWC ends near finetuning whatever lambda (0 to 1e6
measured there), as the class-IL literature reports: the penalty keeps old
weights, not the growing head's bias towards the newest classes.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from datasets.stream import Task
from strategies.base import Strategy, StrategyConfig, register
from strategies.phases import OPTIMIZERS
from core import space
from core.config import bounded
from strategies.rng import purpose_generator

# Per-sample gradients of one chunk are (chunk x num_params) floats; keep that
# under ~256 MB (SimpleCNN: 256 samples per chunk, VGG-16: a few).
_PER_SAMPLE_FLOATS = 2 ** 26
_MAX_CHUNK = 256


@dataclasses.dataclass
class EWCConfig(StrategyConfig):
    # Adam at lr 1e-3: chosen on the validation splits of GTSRB and digits, where
    # SGD (lr 0.05) with the penalty diverged (see the module docstring).
    lr: float = bounded(1e-3, min=1e-6, max=10.0, help="learning rate (Adam's by default)")
    optimizer: str = bounded("adam", choices=OPTIMIZERS,
                             help="adam (default: stable under a stiff penalty), adamw or sgd (with momentum)")
    ewc_lambda: float = bounded(100.0, min=0.0, max=1e9, help="penalty strength lambda of EWC Eq. 3 (search on a log scale)")
    mode: str = bounded("separate", choices=("separate", "online"), help="one Fisher+anchor per task, or Online EWC (one running Fisher)")
    gamma: float = bounded(1.0, min=0.0, max=1.0, help="Online EWC decay of the old Fisher: F = gamma * F_old + F_new")
    fisher_samples: int = bounded(1024, min=1, max=10_000_000, help="training images per task used to estimate the Fisher")
    penalize_head: bool = bounded(True, help="also anchor the old classes' rows of the growing head")


@dataclasses.dataclass
class Anchor:
    """Diagonal Fisher and anchor parameters (name -> tensor, same shapes).

    The penalty runs every training step, so the anchor is also kept flat
    (``flat_params``, ``flat_sqrt_fisher``): one concatenation and three
    element-wise kernels per anchor and step instead of a handful per parameter
    tensor (hundreds of small GPU launches for a CNN).
    """

    fisher: dict[str, torch.Tensor]
    params: dict[str, torch.Tensor]

    def __post_init__(self) -> None:
        self.names = list(self.fisher)
        self.flat_params = torch.cat([self.params[n].reshape(-1).float() for n in self.names])
        flat_fisher = torch.cat([self.fisher[n].reshape(-1).float() for n in self.names])
        self.flat_fisher = flat_fisher
        self.flat_sqrt_fisher = flat_fisher.sqrt()
        # The dicts become views of the flat copies (no second copy in memory).
        offset = 0
        for n in self.names:
            shape, size = self.fisher[n].shape, self.fisher[n].numel()
            self.params[n] = self.flat_params[offset:offset + size].view(shape)
            self.fisher[n] = flat_fisher[offset:offset + size].view(shape)
            offset += size

    def flatten_current(self, current: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for n in self.names:
            p = current[n]
            # The head has grown since the anchor: compare its first (old) rows.
            if p.shape != self.fisher[n].shape:
                p = p[: self.fisher[n].shape[0]]
            parts.append(p.reshape(-1))
        return torch.cat(parts)


@register
class EWC(Strategy):
    name = "ewc"
    config_class = EWCConfig
    defaults_source = (
        "Kirkpatrick et al. 2017 with one Fisher and anchor per task, 1024 Fisher images; Adam at lr 1e-3 and "
        "lambda 100 chosen on the GTSRB and digits validation splits (bench/README.md, EWC and GEM defaults), "
        "where SGD at lr 0.05 diverged"
    )
    # Adam's learning rates (the default optimiser), and lambda on a log scale over
    # six decades: the penalty's size is lambda times the Fisher, whose scale
    # depends on the network and data (extra_report); on GTSRB validation lambda
    # 1e4-1e6 trades plasticity for less forgetting, the stable end of the front.
    search_space = {"lr": space.F(1e-4, 1e-2, log=True), "ewc_lambda": space.F(1.0, 1e6, log=True)}

    def __init__(self, config, ctx) -> None:
        super().__init__(config, ctx)
        self.anchors: list[Anchor] = []
        self._fisher_gen = purpose_generator(ctx.seed, "ewc/fisher")  # which images estimate the Fisher

    # -- the penalty ---------------------------------------------------------
    def penalized_names(self) -> list[str]:
        return [n for n, p in self.model.named_parameters()
                if p.requires_grad and (self.config.penalize_head or not n.startswith("head."))]

    def penalty(self) -> torch.Tensor:
        """(lambda / 2) * sum over anchors and parameters of F * (theta - theta*)^2."""
        current = dict(self.model.named_parameters())
        total = torch.zeros((), device=self.device)
        for anchor in self.anchors:
            # sum F d^2 = |sqrt(F) d|^2: exactly 0 at the anchor; element-wise ops and
            # one reduction, all in float32 (autocast leaves them alone).
            scaled = (anchor.flatten_current(current).float() - anchor.flat_params) * anchor.flat_sqrt_fisher
            total = total + scaled.pow(2).sum()
        return 0.5 * self.config.ewc_lambda * total

    def losses(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = {"ce": F.cross_entropy(logits, y)}
        if self.anchors and self.config.ewc_lambda > 0:
            terms["ewc"] = self.penalty()
        return terms

    # -- Fisher and anchors ------------------------------------------------------
    def end_task(self, task: Task) -> None:
        if self.num_seen >= self.ctx.num_classes_total:
            return  # last task of the stream: no later task would use the anchor
        fisher = self.fisher_diagonal(task)
        params = {n: p.detach() for n, p in self.model.named_parameters() if n in fisher}
        if self.config.mode == "online" and self.anchors:
            old = self.anchors[0].fisher
            merged = {}
            for n, f in fisher.items():
                prev = old.get(n)
                if prev is not None:
                    f = f.clone()
                    # Old head rows keep their decayed Fisher; new rows start at F_new.
                    f[: prev.shape[0]] += self.config.gamma * prev
                merged[n] = f
            self.anchors = [Anchor(merged, params)]
        else:
            self.anchors.append(Anchor(fisher, params))

    def fisher_diagonal(self, task: Task) -> dict[str, torch.Tensor]:
        """Empirical Fisher diagonal from per-sample gradients of -log p(y_true | x)."""
        x_all, y_all = task.train.x, task.train.y
        n = min(self.config.fisher_samples, len(x_all))
        pick = torch.randperm(len(x_all), generator=self._fisher_gen)[:n].to(x_all.device)
        x_all, y_all = x_all[pick], y_all[pick]

        names = self.penalized_names()
        params = {k: v.detach() for k, v in self.model.named_parameters() if k in names}
        frozen = {k: v.detach() for k, v in self.model.named_parameters() if k not in names}
        buffers = dict(self.model.named_buffers())
        model = self.model

        def nll(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            logits = functional_call(model, ({**p, **frozen}, buffers), (x.unsqueeze(0),))
            return F.cross_entropy(logits[:, : self.num_seen].float(), y.unsqueeze(0))

        per_sample_grad = vmap(grad(nll), in_dims=(None, 0, 0))
        numel = sum(p.numel() for p in params.values())
        chunk = max(1, min(_MAX_CHUNK, _PER_SAMPLE_FLOATS // max(numel, 1)))
        fisher = {k: torch.zeros_like(v, dtype=torch.float32) for k, v in params.items()}
        with self.eval_mode():
            for start in range(0, n, chunk):
                xb = self.normalize(x_all[start:start + chunk])
                grads = per_sample_grad(params, xb, y_all[start:start + chunk])
                for k, g in grads.items():
                    fisher[k] += g.float().pow(2).sum(0)
        return {k: f / max(n, 1) for k, f in fisher.items()}

    def extra_report(self) -> dict:
        if not self.anchors:
            return {"ewc_anchors": 0}
        # Fisher scale, to place the lambda search range: SGD with momentum m stays
        # stable while lr * lambda * fisher_max < 2 (1 + m).
        flat = torch.cat([a.flat_fisher for a in self.anchors])
        return {"ewc_anchors": len(self.anchors), "fisher_mean": flat.mean().item(), "fisher_max": flat.max().item()}

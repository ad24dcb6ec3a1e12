"""GDumb: Greedy sampler and Dumb learner (Prabhu, Torr & Dokania, ECCV 2020).

- Sampler (Alg. 1): samples arrive one at a time (here: the task's training
  images in a seeded random order) and are stored greedily under a total budget
  k. With Y the classes seen so far and k_c = k / |Y|: a sample is stored if the
  memory has room; otherwise, if its class holds fewer than k_c samples, a random
  sample of the largest class (ties broken at random) is evicted to make room;
  otherwise it is dropped. The memory stays class-balanced without knowing the
  number of classes in advance. (The test is k_c, not "fewer than the largest
  class": the latter would also keep swapping samples between classes that
  already hold their share.)
- Learner (Alg. 2): at every task the model is RE-INITIALISED and trained from
  scratch on the memory ONLY (cross-entropy over all seen classes); the task's
  other data are never used for training.

In the shared loop: ``begin_task`` updates the memory and rebuilds the model (a
new backbone + a head for all seen classes, from the SAME seeded initialisation
every task, so the re-initialisation is reproducible and independent of the
training history) and the optimiser; ``training_data`` is the memory. Because the
memory is small (200 images = 2 batches of 128), ``passes`` repeats it within
each of the loop's epochs, so the learner gets ``epochs * passes`` epochs on the
memory (the paper trains 256 epochs on it with SGDR; ``passes`` is the knob that
buys that back at the cost of training time). The paper's CutMix regulariser is
not used (the other strategies do not use it either).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterator

import torch

from datasets.stream import Task
from strategies.base import LR_SPACE, Strategy, StrategyConfig, count_batches, register, shuffled_batches
from core.config import bounded
from strategies.memory import ClassMemory
from strategies.rehearsal import MEMORY_SPACE
from strategies.rng import purpose_generator


@dataclasses.dataclass
class GDumbConfig(StrategyConfig):
    memory: int = bounded(200, min=1, max=10_000_000, help="total images the greedy class-balanced memory keeps")
    passes: int = bounded(10, min=1, max=10_000, help="passes over the memory per loop epoch (learner epochs = epochs * passes)")


class GreedyBalancedSampler:
    """GDumb Alg. 1 on opaque keys: decides which offered samples are stored.

    ``slots[c]`` lists class c's stored keys. Deterministic given the generator.
    """

    def __init__(self, budget: int, generator: torch.Generator) -> None:
        if budget <= 0:
            raise ValueError(f"memory budget must be positive, got {budget}")
        self.budget = budget
        self.generator = generator
        self.slots: dict[int, list[Hashable]] = {}
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def counts(self) -> dict[int, int]:
        return {c: len(keys) for c, keys in sorted(self.slots.items())}

    def _randint(self, n: int) -> int:
        return int(torch.randint(n, (1,), generator=self.generator))

    def offer(self, key: Hashable, label: int) -> bool:
        """Offer one sample; True if it was stored."""
        keys = self.slots.setdefault(label, [])  # y joins the seen classes Y
        if self.size < self.budget:
            keys.append(key)
            self.size += 1
            return True
        if len(keys) >= self.budget / len(self.slots):  # |M_y| >= k_c: class y has its share
            return False
        largest = max(len(v) for v in self.slots.values())
        tied = [c for c, v in sorted(self.slots.items()) if len(v) == largest]
        victim = tied[self._randint(len(tied))] if len(tied) > 1 else tied[0]
        self.slots[victim].pop(self._randint(largest))
        keys.append(key)
        return True


@register
class GDumb(Strategy):
    name = "gdumb"
    config_class = GDumbConfig
    defaults_source = (
        "Prabhu et al. 2020: a greedy class-balanced memory, 200 images (the course notebook's budget); 10 "
        "passes per epoch (the paper trains 256 epochs) and the optimiser (lr 0.05) set by hand"
    )
    search_space = {"lr": LR_SPACE, "memory": MEMORY_SPACE}  # the same budget range as the rehearsal methods

    def __init__(self, config, ctx) -> None:
        super().__init__(config, ctx)
        self._sampler_gen = purpose_generator(ctx.seed, "gdumb/sampler")  # arrival order and evictions
        self.sampler = GreedyBalancedSampler(config.memory, self._sampler_gen)
        self.memory = ClassMemory()

    def begin_task(self, task: Task, epochs: int, batch_size: int) -> None:
        self.tasks.append(task)
        self.num_seen += task.num_classes
        self.update_memory(task)
        self.model = self.fresh_model(self.num_seen)
        steps = self.num_train_batches(task, batch_size) * epochs
        self.make_optimizer(self.trainable_parameters(), steps)

    def fresh_model(self, num_classes: int) -> torch.nn.Module:
        """Backbone + head for ``num_classes`` from the run's seeded initialisation.

        The global RNG is forked so that re-initialising does not shift any other
        random stream (on CPU: the modules are built there, then moved).
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.ctx.seed)
            model = self.build_model()
            model.add_classes(num_classes)
        model.head.to(self.device)
        return model

    def update_memory(self, task: Task) -> None:
        """Feed the task's training images to the greedy sampler in a seeded order."""
        # Keys: ("m", row) = row of the class's current memory images; ("t", i) = task image i.
        for c, keys in self.sampler.slots.items():
            self.sampler.slots[c] = [("m", r) for r in range(len(keys))]
        labels = task.train.y.tolist()
        for i in torch.randperm(len(labels), generator=self._sampler_gen).tolist():
            self.sampler.offer(("t", i), labels[i])
        x = task.train.x
        for c, keys in self.sampler.slots.items():
            old_rows = [r for src, r in keys if src == "m"]
            new_idx = [i for src, i in keys if src == "t"]
            parts = []
            if old_rows:
                parts.append(self.memory.class_images(c)[torch.tensor(old_rows, device=x.device)])
            if new_idx:
                parts.append(x[torch.tensor(new_idx, device=x.device)])  # a copy, not a view of the task
            images = torch.cat(parts) if parts else x[:0]
            self.memory.set_class(c, images)
            self.sampler.slots[c] = [("m", r) for r in range(len(images))]

    def training_data(self, task: Task) -> tuple[torch.Tensor, torch.Tensor]:
        stored = self.memory.data()
        if stored is None:
            return task.train.x[:0], task.train.y[:0]
        return stored

    def train_batches(self, task: Task, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y = self.training_data(task)
        for _ in range(self.config.passes):
            yield from shuffled_batches(x, y, batch_size, generator)

    def num_train_batches(self, task: Task, batch_size: int) -> int:
        x, _ = self.training_data(task)
        return count_batches(len(x), batch_size) * self.config.passes

    def memory_size(self) -> int:
        return len(self.memory)

"""Shared machinery for strategies that keep an exemplar memory of past classes.

A fixed total budget ``memory`` is split evenly over the classes seen so far
(iCaRL, Rebuffi et al. 2017, Alg. 4-5; the course notebook's rehearsal): after each
task the old classes shrink to their first m exemplars and the new classes get m
each, chosen at random (notebook) or by herding (iCaRL). The memory is
concatenated with the new task's data for training.
"""
from __future__ import annotations

import dataclasses

import torch

from datasets.stream import Task
from strategies.base import Strategy, StrategyConfig, count_batches, shuffled_batches
from core import space
from core.config import ConfigError, bounded
from strategies.memory import ClassMemory, herding_order, update_balanced_memory
from strategies.rng import purpose_generator


@dataclasses.dataclass
class RehearsalConfig(StrategyConfig):
    memory: int = bounded(200, min=0, max=10_000_000, help="total exemplar images kept over all classes")
    selection: str = bounded("random", choices=("random", "herding"), help="how exemplars are chosen")


# The memory budget searched by the rehearsal methods: a budget on a log scale,
# from about one image per class on GTSRB's 40 classes to ten times the course
# notebook's 200 (search/spaces.py clips the top to the stream's training images).
MEMORY_SPACE = space.I(40, 2000, log=True)


class RehearsalStrategy(Strategy):
    config_class = RehearsalConfig

    def __init__(self, config, ctx) -> None:
        super().__init__(config, ctx)
        self.memory = ClassMemory()
        # Its own stream (strategies/rng.py): random exemplar choices never shift
        # another purpose's random numbers, and no seed offset can collide.
        self._selection_gen = purpose_generator(ctx.seed, "rehearsal/selection")

    def validate_against(self, stream) -> None:
        total_train = sum(len(t.train) for t in stream.tasks)
        if self.config.memory > total_train:
            raise ConfigError(f"{self.name}: memory={self.config.memory} is larger than the stream's "
                              f"{total_train} training images")

    def training_data(self, task: Task) -> tuple[torch.Tensor, torch.Tensor]:
        stored = self.memory.data()
        if stored is None:
            return task.train.x, task.train.y
        return torch.cat([task.train.x, stored[0]]), torch.cat([task.train.y, stored[1]])

    def memory_size(self) -> int:
        return len(self.memory)

    def mixed_batches(self, task: Task, batch_size: int, generator: torch.Generator, memory_batch: int):
        """Experience replay (Chaudhry et al. 2019, "On Tiny Episodic Memories",
        Alg. 1): every batch of the new task's data is joined by ``memory_batch``
        exemplars drawn uniformly from the memory. Unlike concatenating the memory
        to the task's data once, the few exemplars per class are revisited every
        step, which keeps old classes from being drowned by the new ones."""
        stored = self.memory.data()
        for xb, yb in shuffled_batches(task.train.x, task.train.y, batch_size, generator):
            if stored is not None and memory_batch > 0:
                idx = torch.randint(0, len(stored[1]), (memory_batch,), generator=generator).to(stored[0].device)
                xb, yb = torch.cat([xb, stored[0][idx]]), torch.cat([yb, stored[1][idx]])
            yield xb, yb

    def num_mixed_batches(self, task: Task, batch_size: int) -> int:
        return count_batches(len(task.train), batch_size)

    def select_exemplars(self, images: torch.Tensor, m: int) -> torch.Tensor:
        """Indices of the m exemplars to keep, in priority order."""
        if self.config.selection == "herding":
            return herding_order(self.extract_features(images), m).to(images.device)
        return torch.randperm(len(images), generator=self._selection_gen)[:m].to(images.device)

    def update_memory(self, task: Task) -> None:
        def images_of(label: int) -> torch.Tensor:
            return task.train.x[task.train.y == label]
        update_balanced_memory(self.memory, self.config.memory, list(task.labels), images_of, self.select_exemplars)

"""Class-incremental streams: the one object every strategy and the loop consume.

Protocol (Rebuffi et al. 2017, iCaRL, §4): the classes of a labelled
dataset are put in an order (natural or seeded), cut into tasks, and relabelled so
that the class at position ``i`` of the order gets label ``i``. Task ``t`` therefore
owns the contiguous label range ``[label_offset, label_offset + num_classes)``.
Each task carries its own train / val / test tensors; the validation split is
carved from the task's training data (by group where the dataset has groups, e.g.
GTSRB physical tracks, stratified by class otherwise) so that a search never
looks at test.

Images stay uint8 NCHW tensors on the host (or device) for their whole life:
conversion to float, normalisation and augmentation happen per batch in the loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Split:
    """Images (uint8, N x C x H x W) and stream labels (int64, already remapped)."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8:
            raise ValueError(f"split images must be uint8, got {self.x.dtype}")
        if self.x.dim() != 4:
            raise ValueError(f"split images must be N x C x H x W, got shape {tuple(self.x.shape)}")
        if self.y.dtype != torch.int64 or self.y.dim() != 1 or len(self.y) != len(self.x):
            raise ValueError("split labels must be a 1-D int64 tensor with one label per image")

    def __len__(self) -> int:
        return len(self.y)

    @staticmethod
    def empty(image_shape: tuple[int, int, int]) -> "Split":
        return Split(torch.empty((0, *image_shape), dtype=torch.uint8), torch.empty(0, dtype=torch.int64))

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class Task:
    """One step of the stream. ``classes`` are the ORIGINAL dataset class ids, in
    stream order; their stream labels are ``label_offset + position``."""

    task_id: int
    classes: list[int]
    label_offset: int
    train: Split
    val: Split
    test: Split

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> range:
        """Stream labels owned by this task."""
        return range(self.label_offset, self.label_offset + self.num_classes)


@dataclass
class Stream:
    """A class-incremental sequence of tasks built from one dataset.

    ``class_order[i]`` is the original class id that got stream label ``i``.
    ``channel_mean`` / ``channel_std`` (in 0..1 units) are computed on the training
    images of the stream and used by the networks to normalise their input.
    """

    name: str
    tasks: list[Task]
    class_order: list[int]
    image_shape: tuple[int, int, int]
    channel_mean: tuple[float, ...]
    channel_std: tuple[float, ...]
    class_names: list[str] | None = None
    seed: int = 0
    val_fraction: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_order)

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def task_sizes(self) -> list[int]:
        return [t.num_classes for t in self.tasks]

    def task_class_names(self) -> list[list[str]] | None:
        """Each task's class names, in stream order (``class_names`` is indexed by
        stream label, and task t owns the labels from its ``label_offset``)."""
        if self.class_names is None:
            return None
        return [list(self.class_names[t.label_offset:t.label_offset + t.num_classes]) for t in self.tasks]

    def describe(self) -> dict:
        """JSON-ready summary recorded next to every result (what was trained on)."""
        return {
            "name": self.name,
            "num_tasks": self.num_tasks,
            "num_classes": self.num_classes,
            "task_classes": [t.classes for t in self.tasks],
            # The classes' names, task by task (None when the dataset has none):
            # a result file then says what each task was about, not only ids.
            "task_class_names": self.task_class_names(),
            "class_order": list(self.class_order),
            "image_shape": list(self.image_shape),
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "train_sizes": [len(t.train) for t in self.tasks],
            "val_sizes": [len(t.val) for t in self.tasks],
            "test_sizes": [len(t.test) for t in self.tasks],
            **self.info,
        }


# Purposes of the subset generators (with the seed, the task and the label):
# distinct streams of random numbers for the two subsets.
_TRAIN_SUBSET, _EVAL_SUBSET = 71, 72


def _class_subset(y: torch.Tensor, fraction: float, rng_key: list[int]) -> torch.Tensor:
    """Indices (in their original order) of ``ceil(fraction * n_c)`` images of
    every label c of ``y`` -- at least one per label, so no class vanishes."""
    labels = y.cpu().numpy()
    keep = []
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        k = max(1, int(np.ceil(fraction * len(where))))
        keep.append(np.random.default_rng([*rng_key, int(label)]).choice(where, size=k, replace=False))
    return torch.as_tensor(np.sort(np.concatenate(keep)) if keep else np.empty(0, dtype=np.int64))


def _subset(split: Split, fraction: float, rng_key: list[int]) -> Split:
    if fraction >= 1.0 or len(split) == 0:
        return split
    idx = _class_subset(split.y, fraction, rng_key).to(split.y.device)
    return Split(split.x[idx], split.y[idx])


def fidelity_subset(stream: Stream, train_fraction: float = 1.0, eval_fraction: float = 1.0,
                    seed: int = 0) -> Stream:
    """The stream a cheaper run sees: a share of each class's images per task.

    A fidelity for multi-fidelity search that still runs every task (so
    forgetting can show), unlike stopping after the first tasks. Per task and
    class, ``ceil(fraction * n)`` images (at least one) are kept, drawn without
    replacement:

    - training images with ``train_fraction``, drawn by the run's ``seed`` (a
      seed's configs all train on the same images);
    - validation and test images with ``eval_fraction``, drawn by a fixed key,
      the same for every run and seed, so cheap runs are compared on one set.

    Fractions of 1 return ``stream`` itself. The class order, labels and the
    normalisation statistics are the full stream's (they define the benchmark)."""
    if train_fraction >= 1.0 and eval_fraction >= 1.0:
        return stream
    tasks = [Task(task_id=t.task_id, classes=t.classes, label_offset=t.label_offset,
                  train=_subset(t.train, train_fraction, [seed, _TRAIN_SUBSET, t.task_id]),
                  val=_subset(t.val, eval_fraction, [0, _EVAL_SUBSET, t.task_id]),
                  test=_subset(t.test, eval_fraction, [0, _EVAL_SUBSET, t.task_id]))
             for t in stream.tasks]
    return Stream(name=stream.name, tasks=tasks, class_order=stream.class_order, image_shape=stream.image_shape,
                  channel_mean=stream.channel_mean, channel_std=stream.channel_std,
                  class_names=stream.class_names, seed=stream.seed, val_fraction=stream.val_fraction,
                  info=stream.info)


def channel_stats(x_uint8_nchw: np.ndarray | torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in 0..1 units, computed in float64 chunks."""
    x = torch.as_tensor(x_uint8_nchw)
    channels = x.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for start in range(0, len(x), 4096):
        chunk = x[start:start + 4096].to(torch.float64) / 255.0
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += (chunk * chunk).sum(dim=(0, 2, 3))
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = total / max(count, 1)
    std = (total_sq / max(count, 1) - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)

"""Build a class-incremental ``Stream`` from ``DatasetArrays``.

Protocol (Rebuffi et al. 2017, iCaRL, §4; Lopez-Paz & Ranzato 2017 for the
per-task view):

1. Select classes (all present ones, the first N in natural order, or a list)
   and order them: ``natural`` (sorted ids) or ``seeded`` (a permutation drawn
   from ``seed``).
2. Cut the order into tasks: ``num_tasks`` near-equal tasks (sizes differ by at
   most one, the first tasks get the extra classes: 43 classes in 5 tasks is
   [9, 9, 9, 8, 8]) or explicit ``task_sizes``. The GTSRB course-notebook
   protocol is ``classes=40, num_tasks=5``: classes 0..39, 5 tasks of 8.
3. Relabel: the class at position i of the order gets stream label i, so task t
   owns the contiguous labels ``[label_offset, label_offset + num_classes)``.
4. Carve a validation split from each class's training images: by group when
   the dataset has groups (GTSRB tracks are 30 near-identical frames of one
   physical sign; an image-level split would put the same sign on both sides
   and overstate accuracy), stratified by image otherwise. ``val_fraction=0``
   gives empty val splits (reruns train on train+val and report test).
5. Shuffle each task's training split (the GTSRB file is sorted by
   class/track), take the test images of the task's classes, and convert to
   uint8 NCHW / int64 tensors.

Determinism: every random choice comes from its own generator seeded with
``(seed, purpose, key)``, so the same arguments give identical tensors, and a
class's validation images do not depend on which other classes were selected
or how they were grouped into tasks.

``plan_stream`` does steps 1-4 on indices only (cheap, and what the tests use
to check disjointness by group); ``build_stream`` materialises the plan.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Sequence

import numpy as np
import torch

from .arrays import DatasetArrays
from .errors import DatasetError
from .stream import Split, Stream, Task, channel_stats

CLASS_ORDERS = ("natural", "seeded")

# Generator purposes: separate streams so that, e.g., changing the class order
# does not change which images become validation images.
_RNG_ORDER, _RNG_VAL, _RNG_SHUFFLE = 0, 1, 2

# Images copied per chunk while gathering + transposing a task's split.
_GATHER_CHUNK = 4096


@dataclass
class TaskPlan:
    """One task as indices into the source arrays (before any copying)."""

    task_id: int
    classes: list[int]          # original class ids, in stream order
    label_offset: int
    train_idx: np.ndarray       # into x_train, shuffled
    val_idx: np.ndarray         # into x_train, sorted
    test_idx: np.ndarray        # into x_test, sorted


@dataclass
class StreamPlan:
    class_order: list[int]
    tasks: list[TaskPlan]
    val_split: str              # "group" | "stratified" | "none"
    label_lut: np.ndarray       # original class id -> stream label (-1: not selected)


# --------------------------------------------------------------------------- arguments

def _rng(seed: int, purpose: int, key: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, purpose, key])


def _is_int(v) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _select_classes(present: list[int], classes, known: list[int] | None = None) -> list[int]:
    """Selected class ids in natural (sorted) order. ``known``: every class id the
    dataset has (training labels, test labels, class names), to tell "the first
    N classes" from "the first N classes that happen to have training images"."""
    if classes is None:
        return list(present)
    if _is_int(classes):
        n = int(classes)
        if n < 1 or n > len(present):
            raise DatasetError(f"classes={n} is out of range: the training data has {len(present)} classes")
        first = (known or present)[:n]
        missing = [c for c in first if c not in set(present)]
        if missing:
            # Taking present[:n] would silently shift "classes 0..N-1" onto other ids.
            raise DatasetError(f"classes={n}: class id(s) {_ranges(missing)} of the first {n} have no training "
                               f"image; fix the data or list the classes to use")
        return present[:n]
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence) and not isinstance(classes, np.ndarray):
        raise DatasetError(f"classes must be None, an int or a list of class ids, got {classes!r}")
    ids = list(classes)
    if not ids:
        raise DatasetError("classes is an empty list")
    if not all(_is_int(c) for c in ids):
        raise DatasetError(f"classes must be integer class ids, got {ids!r}")
    ids = [int(c) for c in ids]
    dups = sorted({c for c in ids if ids.count(c) > 1})
    if dups:
        raise DatasetError(f"classes lists id(s) {dups} more than once")
    present_set = set(present)
    unknown = [c for c in ids if c not in present_set]
    if unknown:
        raise DatasetError(
            f"unknown class id(s) {unknown}: the training data has {len(present)} classes "
            f"({_ranges(present)})"
        )
    return sorted(ids)


def _ranges(ids: list[int]) -> str:
    """[0,1,2,3,7,8] -> '0..3, 7..8' (short, one-line class lists for messages)."""
    out, start, prev = [], None, None
    for c in ids:
        if start is None:
            start = prev = c
        elif c == prev + 1:
            prev = c
        else:
            out.append(f"{start}..{prev}" if prev != start else f"{start}")
            start = prev = c
    if start is not None:
        out.append(f"{start}..{prev}" if prev != start else f"{start}")
    return ", ".join(out)


def split_sizes(num_classes: int, num_tasks: int) -> list[int]:
    """Near-equal task sizes; the remainder goes to the FIRST tasks (43, 5 -> [9, 9, 9, 8, 8])."""
    base, extra = divmod(num_classes, num_tasks)
    return [base + 1] * extra + [base] * (num_tasks - extra)


def _task_sizes(n: int, num_tasks, task_sizes) -> list[int]:
    if num_tasks is None and task_sizes is None:
        raise DatasetError("pass num_tasks or task_sizes (neither was given)")
    if num_tasks is not None and task_sizes is not None:
        raise DatasetError("pass num_tasks or task_sizes, not both")
    if num_tasks is not None:
        if not _is_int(num_tasks) or num_tasks < 1:
            raise DatasetError(f"num_tasks must be an integer >= 1, got {num_tasks!r}")
        if num_tasks > n:
            raise DatasetError(f"num_tasks={num_tasks} is more than the {n} selected classes")
        return split_sizes(n, int(num_tasks))
    sizes = list(task_sizes)
    if not sizes:
        raise DatasetError("task_sizes is empty")
    if not all(_is_int(s) and s >= 1 for s in sizes):
        raise DatasetError(f"task_sizes must be positive integers, got {sizes}")
    sizes = [int(s) for s in sizes]
    if sum(sizes) != n:
        raise DatasetError(f"task_sizes {sizes} sum to {sum(sizes)} but {n} classes are selected")
    return sizes


# --------------------------------------------------------------------------- validation split

def _val_by_group(idx: np.ndarray, groups: np.ndarray, frac: float, rng: np.random.Generator) -> np.ndarray:
    """Whole groups of one class, in seeded order, until at least ``frac`` of its
    images; at least one group (if >= 2) and never all of them."""
    g = groups[idx]
    uniq, counts = np.unique(g, return_counts=True)
    if frac <= 0 or len(uniq) < 2:
        return idx[:0]
    perm = rng.permutation(len(uniq))
    cum = np.cumsum(counts[perm])
    # First k with cum[k-1] >= frac * n; the epsilon absorbs float error in frac * n.
    k = int(np.searchsorted(cum, frac * len(idx) - 1e-9, side="left")) + 1
    k = min(max(k, 1), len(uniq) - 1)
    return idx[np.isin(g, uniq[perm[:k]])]


def _val_stratified(idx: np.ndarray, frac: float, rng: np.random.Generator) -> np.ndarray:
    """round(frac * n) images of one class (at least 1 if n >= 2, never all)."""
    n = len(idx)
    if frac <= 0 or n < 2:
        return idx[:0]
    k = min(max(int(round(frac * n)), 1), n - 1)
    return np.sort(idx[rng.permutation(n)[:k]])


# --------------------------------------------------------------------------- plan

def plan_stream(
    arrays: DatasetArrays,
    num_tasks: int | None = None,
    task_sizes: list[int] | None = None,
    classes: int | list[int] | None = None,
    class_order: str = "natural",
    seed: int = 0,
    val_fraction: float = 0.1,
) -> StreamPlan:
    """Steps 1-4 of the protocol on indices; see ``build_stream``."""
    if not isinstance(arrays, DatasetArrays):
        raise DatasetError(f"build_stream needs DatasetArrays, got {type(arrays).__name__}")
    if not _is_int(seed) or seed < 0:
        raise DatasetError(f"seed must be an integer >= 0, got {seed!r}")
    if not isinstance(val_fraction, Real) or isinstance(val_fraction, bool) or math.isnan(val_fraction) \
            or not 0.0 <= float(val_fraction) < 1.0:
        raise DatasetError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    val_fraction = float(val_fraction)
    if class_order not in CLASS_ORDERS:
        raise DatasetError(f"class_order must be one of {', '.join(CLASS_ORDERS)}, got {class_order!r}")

    who = arrays.name
    y_train, y_test = arrays.y_train, arrays.y_test
    present = arrays.classes
    names = len(arrays.class_names) if arrays.class_names is not None else 0
    known = sorted(set(present) | {int(c) for c in np.unique(y_test)} | set(range(names)))
    selected = _select_classes(present, classes, known)
    sizes = _task_sizes(len(selected), num_tasks, task_sizes)

    order = list(selected)
    if class_order == "seeded":
        order = [selected[i] for i in _rng(seed, _RNG_ORDER).permutation(len(selected))]

    top = max(int(y_train.max()), int(y_test.max()) if len(y_test) else 0)
    lut = np.full(top + 1, -1, dtype=np.int64)
    lut[np.asarray(order, dtype=np.int64)] = np.arange(len(order), dtype=np.int64)

    groups = arrays.groups_train
    if val_fraction == 0:
        val_split = "none"
    else:
        val_split = "group" if groups is not None else "stratified"
    if groups is not None and val_fraction > 0:
        _check_groups_within_classes(who, y_train, groups, lut)

    # Indices of each class's images, found once with a stable sort (O(N log N),
    # rather than one full scan of the labels per class).
    train_by_class = _indices_by_class(y_train)
    test_by_class = _indices_by_class(y_test)

    tasks: list[TaskPlan] = []
    start = 0
    for t, size in enumerate(sizes):
        task_classes = order[start:start + size]
        train_parts, val_parts, test_parts = [], [], []
        for c in task_classes:
            idx = train_by_class[c]
            rng = _rng(seed, _RNG_VAL, c)
            if val_split == "group":
                val = _val_by_group(idx, groups, val_fraction, rng)
            elif val_split == "stratified":
                val = _val_stratified(idx, val_fraction, rng)
            else:
                val = idx[:0]
            train_parts.append(np.setdiff1d(idx, val, assume_unique=True))
            val_parts.append(val)
            test_parts.append(test_by_class.get(c, np.empty(0, dtype=np.int64)))
        train_idx = np.concatenate(train_parts)
        train_idx = train_idx[_rng(seed, _RNG_SHUFFLE, t).permutation(len(train_idx))]
        tasks.append(
            TaskPlan(
                task_id=t,
                classes=[int(c) for c in task_classes],
                label_offset=start,
                train_idx=train_idx,
                val_idx=np.sort(np.concatenate(val_parts)),
                test_idx=np.sort(np.concatenate(test_parts)),
            )
        )
        start += size
    plan = StreamPlan(class_order=[int(c) for c in order], tasks=tasks, val_split=val_split, label_lut=lut)
    _check_plan(arrays, plan, selected)
    return plan


def _indices_by_class(y: np.ndarray) -> dict[int, np.ndarray]:
    if len(y) == 0:
        return {}
    order = np.argsort(y, kind="stable")
    uniq, starts = np.unique(y[order], return_index=True)
    ends = list(starts[1:]) + [len(y)]
    return {int(c): order[s:e].astype(np.int64, copy=False) for c, s, e in zip(uniq, starts, ends)}


def _check_groups_within_classes(who: str, y: np.ndarray, groups: np.ndarray, lut: np.ndarray) -> None:
    # Splitting by group per class is only leak-free if no group spans two
    # selected classes (true for GTSRB tracks: class * 10000 + track).
    mask = lut[y] >= 0
    pairs = np.unique(np.stack([groups[mask], y[mask]], axis=1), axis=0)
    g, counts = np.unique(pairs[:, 0], return_counts=True)
    shared = g[counts > 1]
    if len(shared):
        cls = sorted(int(c) for c in pairs[pairs[:, 0] == shared[0], 1])
        raise DatasetError(
            f"{who}: group {int(shared[0])} has images of classes {cls}; groups_train must not cross classes"
        )


def _check_plan(arrays: DatasetArrays, plan: StreamPlan, selected: list[int]) -> None:
    """Completeness and disjointness, checked on every build (cheap: index sets).
    Raised, not asserted, so they also hold under ``python -O``."""
    who = arrays.name
    all_classes = [c for t in plan.tasks for c in t.classes]
    if sorted(all_classes) != sorted(selected) or len(set(all_classes)) != len(all_classes):
        raise DatasetError(f"{who}: internal error: task classes {all_classes} do not partition {selected}")
    offset = 0
    for t in plan.tasks:
        if t.label_offset != offset:
            raise DatasetError(f"{who}: internal error: task {t.task_id} labels do not start at {offset}")
        offset += len(t.classes)
        own = set(range(t.label_offset, t.label_offset + len(t.classes)))
        for split, idx, y in (("train", t.train_idx, arrays.y_train), ("val", t.val_idx, arrays.y_train),
                              ("test", t.test_idx, arrays.y_test)):
            labels = set(np.unique(plan.label_lut[y[idx]]).tolist())
            if not labels <= own:
                raise DatasetError(f"{who}: internal error: task {t.task_id} {split} has labels outside its range")
        if np.intersect1d(t.train_idx, t.val_idx).size:
            raise DatasetError(f"{who}: internal error: task {t.task_id} has images in both train and val")
        expected = int(np.isin(arrays.y_train, t.classes).sum())
        if len(t.train_idx) + len(t.val_idx) != expected or len(np.unique(t.train_idx)) != len(t.train_idx):
            raise DatasetError(f"{who}: internal error: task {t.task_id} train+val do not cover its classes once")
        if any(not np.any(arrays.y_train[t.train_idx] == c) for c in t.classes):
            raise DatasetError(f"{who}: internal error: task {t.task_id} has a class with no training image")
    if plan.val_split == "group" and arrays.groups_train is not None:
        train_g = np.concatenate([arrays.groups_train[t.train_idx] for t in plan.tasks])
        val_g = np.concatenate([arrays.groups_train[t.val_idx] for t in plan.tasks])
        both = np.intersect1d(train_g, val_g)
        if both.size:
            raise DatasetError(f"{who}: internal error: group {int(both[0])} is in both train and val")


# --------------------------------------------------------------------------- materialise

def _gather_nchw(x_nhwc: np.ndarray, idx: np.ndarray) -> torch.Tensor:
    """x[idx] as a contiguous uint8 NCHW tensor, written straight into its final
    buffer chunk by chunk: one full-size copy instead of two (gather, then
    transpose), which matters for the ~120 MB GTSRB train array."""
    n = len(idx)
    _, h, w, c = x_nhwc.shape
    out = np.empty((n, c, h, w), dtype=np.uint8)
    for s in range(0, n, _GATHER_CHUNK):
        out[s:s + _GATHER_CHUNK] = x_nhwc[idx[s:s + _GATHER_CHUNK]].transpose(0, 3, 1, 2)
    return torch.from_numpy(out)


def _split(x: np.ndarray, y: np.ndarray, lut: np.ndarray, idx: np.ndarray) -> Split:
    return Split(_gather_nchw(x, idx), torch.from_numpy(lut[y[idx]].astype(np.int64, copy=False)))


def _pooled_stats(splits: list[Split]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``channel_stats`` over all tasks' training images without concatenating
    them (which would copy the whole training set once more): per-task means
    and second moments, weighted by pixel count."""
    counts, means, sq = [], [], []
    for s in splits:
        if len(s) == 0:
            continue
        m, sd = channel_stats(s.x)
        counts.append(len(s) * s.x.shape[2] * s.x.shape[3])
        means.append(np.asarray(m, dtype=np.float64))
        sq.append(np.asarray(sd, dtype=np.float64) ** 2 + np.asarray(m, dtype=np.float64) ** 2)
    w = np.asarray(counts, dtype=np.float64) / float(sum(counts))
    mean = (w[:, None] * np.stack(means)).sum(axis=0)
    var = np.maximum((w[:, None] * np.stack(sq)).sum(axis=0) - mean * mean, 1e-12)
    return tuple(float(v) for v in mean), tuple(float(v) for v in np.sqrt(var))


def build_stream(
    arrays: DatasetArrays,
    num_tasks: int | None = None,
    task_sizes: list[int] | None = None,
    classes: int | list[int] | None = None,
    class_order: str = "natural",
    seed: int = 0,
    val_fraction: float = 0.1,
) -> Stream:
    """The class-incremental stream of ``arrays`` (protocol in the module docstring).

    Exactly one of ``num_tasks`` / ``task_sizes``. ``classes``: None = every class
    in y_train, int N = the first N ids in natural order, list = that subset.
    Every problem with the arguments is a one-line ``DatasetError``.
    """
    plan = plan_stream(arrays, num_tasks, task_sizes, classes, class_order, seed, val_fraction)
    lut = plan.label_lut
    tasks = [
        Task(
            task_id=tp.task_id,
            classes=list(tp.classes),
            label_offset=tp.label_offset,
            train=_split(arrays.x_train, arrays.y_train, lut, tp.train_idx),
            val=_split(arrays.x_train, arrays.y_train, lut, tp.val_idx),
            test=_split(arrays.x_test, arrays.y_test, lut, tp.test_idx),
        )
        for tp in plan.tasks
    ]
    mean, std = _pooled_stats([t.train for t in tasks])
    h, w, c = arrays.image_shape_hwc
    names = [arrays.class_names[k] for k in plan.class_order] if arrays.class_names is not None else None
    return Stream(
        name=arrays.name,
        tasks=tasks,
        class_order=list(plan.class_order),
        image_shape=(c, h, w),
        channel_mean=mean,
        channel_std=std,
        class_names=names,
        seed=int(seed),
        val_fraction=float(val_fraction),
        info={"dataset": arrays.name, "val_split": plan.val_split},
    )

"""The one training / evaluation loop for every strategy (DESIGN §3).

For each task t of the stream: ``begin_task``; ``epochs`` passes over the
strategy's batches (uint8 -> random crop on the device -> normalised float,
channels_last, optional bf16 autocast) with ``train_step``; ``end_task``; then row
t of two accuracy matrices on the evaluation split (val during a search, test in
a rerun):

- class-incremental: argmax over ALL classes seen so far (the default protocol of
  iCaRL, Rebuffi et al. 2017);
- task-incremental: argmax inside task j's own classes (task identity given).

R[t, j] is the accuracy on task j's eval data after training through task t. A
callback receives the partial result after every task (the Tune trainable turns
it into a report). ``checkpoint`` receives a ``LoopState`` after every task
(``strategies/checkpoint.py``: strategy, result so far, RNG states), and
``resume=state`` continues such a state at the next task, bit-identically to a
run that was never interrupted. Loss terms are summed on the device and read once per epoch,
so training has no per-step host synchronisation; a NaN/inf epoch loss stops the
run with status ``diverged``.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from core.metrics import summarize
from datasets.stream import Stream
from strategies.base import STRATEGIES, RunContext, Strategy
from strategies.batch_ops import random_crop, random_flip
from strategies.checkpoint import LoopState, capture, restore_rngs
from core.config import ConfigError, bounded, config_from_dict
from strategies.networks import BACKBONES
from core.result import RunResult, environment_info, metrics_key


@dataclasses.dataclass
class LoopConfig:
    """Protocol and hardware settings shared by all strategies of a comparison."""

    epochs: int = bounded(5, min=1, max=1000, help="training epochs per task")
    batch_size: int = bounded(128, min=2, max=65536, help="training batch size")
    backbone: str = bounded("simplecnn", choices=BACKBONES, help="feature extractor")
    pretrained: bool = bounded(False, help="ImageNet weights for vgg16 when cached locally")
    eval_split: str = bounded("val", choices=("val", "test"), help="split that fills the accuracy matrices")
    device: str = bounded("auto", help="auto, cpu, cuda or cuda:N")
    threads: int = bounded(0, min=0, max=1024, help="torch CPU threads (0 = leave as is)")
    channels_last: bool = bounded(True, help="channels_last memory format")
    precision: str = bounded("fp32", choices=("fp32", "bf16"), help="bf16 = autocast mixed precision")
    augment: str = bounded("crop", choices=("none", "crop", "crop+flip"), help="batch augmentation (no flip for traffic signs)")
    crop_padding: int = bounded(-1, min=-1, max=64, help="random-crop padding in pixels (-1 = image size / 8)")
    eval_batch_size: int = bounded(1024, min=1, max=65536, help="evaluation batch size")
    seed: int = bounded(0, min=0, max=2**31 - 1, help="seed for init, data order and augmentation")


# Smallest image side each backbone can take (VGG-16: five 2x max-poolings).
MIN_IMAGE_SIDE = {"vgg16": 32}


class DivergedError(RuntimeError):
    """Training loss became NaN or infinite."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a torch device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine")
    return device


def strategy_config(method: str, overrides: dict[str, Any] | None = None):
    if method not in STRATEGIES:
        raise ConfigError(f"unknown method {method!r}; known methods: {', '.join(sorted(STRATEGIES))}")
    cls = STRATEGIES[method]
    return config_from_dict(cls.config_class, overrides, owner=method)


def make_strategy(method: str, overrides: dict[str, Any] | None, stream: Stream, loop_cfg: LoopConfig) -> Strategy:
    """Validate the config and build the strategy (seeded, on the right device)."""
    config = strategy_config(method, overrides)
    side = min(stream.image_shape[1:])
    if side < MIN_IMAGE_SIDE.get(loop_cfg.backbone, 1):
        raise ConfigError(f"backbone {loop_cfg.backbone} needs images of at least {MIN_IMAGE_SIDE[loop_cfg.backbone]} px "
                          f"(its poolings); this stream's are {stream.image_shape[1]}x{stream.image_shape[2]}")
    device = resolve_device(loop_cfg.device)
    if loop_cfg.threads > 0:
        torch.set_num_threads(loop_cfg.threads)
    torch.manual_seed(loop_cfg.seed)
    ctx = RunContext(
        num_classes_total=stream.num_classes,
        image_shape=stream.image_shape,
        channel_mean=stream.channel_mean,
        channel_std=stream.channel_std,
        backbone=loop_cfg.backbone,
        device=device,
        channels_last=loop_cfg.channels_last,
        precision=loop_cfg.precision,
        batch_size=loop_cfg.batch_size,
        seed=loop_cfg.seed,
        pretrained=loop_cfg.pretrained,
        eval_batch_size=loop_cfg.eval_batch_size,
    )
    strategy = STRATEGIES[method](config, ctx)
    strategy.validate_against(stream)
    return strategy


@torch.no_grad()
def evaluate(strategy: Strategy, stream: Stream, upto: int, split: str) -> tuple[list[float], list[float], list[int]]:
    """Class-IL and task-IL accuracy on tasks 0..upto, and each task's eval size."""
    strategy.model.eval()
    row_class: list[float] = []
    row_task: list[float] = []
    sizes: list[int] = []
    bs = strategy.ctx.eval_batch_size
    for task in stream.tasks[: upto + 1]:
        data = getattr(task, split)
        lo, hi = task.label_offset, task.label_offset + task.num_classes
        correct_class = torch.zeros((), dtype=torch.long, device=strategy.device)
        correct_task = torch.zeros((), dtype=torch.long, device=strategy.device)
        for start in range(0, len(data), bs):
            x = strategy.normalize(data.x[start:start + bs])
            y = data.y[start:start + bs]
            with strategy.autocast():
                s = strategy.scores(x, task_id=task.task_id).float()
            if not strategy.task_incremental_only:
                correct_class += (s.argmax(1) == y).sum()
            correct_task += (s[:, lo:hi].argmax(1) + lo == y).sum()
        n = len(data)
        sizes.append(n)
        row_class.append(float("nan") if strategy.task_incremental_only else correct_class.item() / n)
        row_task.append(correct_task.item() / n)
    strategy.model.train()
    return row_class, row_task, sizes


def _pad_row(row: list[float], width: int) -> list[float | None]:
    return [v for v in row] + [None] * (width - len(row))


def result_metrics(result: RunResult) -> dict[str, Any]:
    """Metrics of the matrices so far (square k x k for k completed tasks)."""
    k = result.tasks_done
    if k == 0:
        return {"class_il": None, "task_il": None}
    def square(rows):
        return [[rows[i][j] for j in range(k)] for i in range(k)]
    sizes = result.eval_sizes[:k]
    out: dict[str, Any] = {"task_il": summarize(square(result.acc_task_il), sizes)}
    out["class_il"] = None if result.task_incremental_only else summarize(square(result.acc_class_il), sizes)
    return out


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(
    strategy: Strategy,
    stream: Stream,
    loop_cfg: LoopConfig,
    callback: Callable[[RunResult], None] | None = None,
    log: Callable[[str], None] | None = _log,
    *,
    resume: LoopState | None = None,
    checkpoint: Callable[[LoopState], None] | None = None,
) -> RunResult:
    """Train ``strategy`` through ``stream``; return the filled RunResult.

    A diverged run returns with ``status='diverged'`` and the rows completed so
    far; other exceptions propagate (the caller records them).

    ``checkpoint(state)`` is called after each task's row is filled (before
    ``callback``); the state refers to the live strategy, so serialise it there
    (``strategies.checkpoint.save_state``). ``resume``: a state saved that way
    (``strategy`` must be ``resume.strategy``); the run goes on at task
    ``resume.tasks_done`` with the saved result and random-number states.
    """
    split = loop_cfg.eval_split
    if any(len(getattr(t, split)) == 0 for t in stream.tasks):
        raise ConfigError(f"eval_split={split!r} but some task has no {split} images (use a validation fraction > 0 or eval on test)")
    device = strategy.device
    stream_on_device = [dataclasses.replace(t, train=t.train.to(device), val=t.val.to(device), test=t.test.to(device)) for t in stream.tasks]
    stream = dataclasses.replace(stream, tasks=stream_on_device)
    padding = loop_cfg.crop_padding if loop_cfg.crop_padding >= 0 else max(stream.image_shape[1] // 8, 1)

    T = stream.num_tasks
    if resume is None:
        gen = torch.Generator().manual_seed(loop_cfg.seed)
        result = RunResult(
            method=strategy.name,
            config=dataclasses.asdict(strategy.config),
            protocol=dataclasses.asdict(loop_cfg),
            stream=stream.describe(),
            task_incremental_only=strategy.task_incremental_only,
            eval_split=split,
            environment=environment_info(),
        )
        first = 0
    else:
        if resume.strategy is not strategy:
            raise ValueError("run(strategy, ..., resume=state): pass state.strategy as the strategy")
        result = resume.result
        first = result.tasks_done
        if result.protocol != dataclasses.asdict(loop_cfg) and log:
            log(f"[{strategy.name}] resuming with a different loop config than the checkpoint's")
        if first > T or result.stream.get("num_tasks") != T:
            raise ValueError(f"checkpoint after {first} tasks of a {result.stream.get('num_tasks')}-task stream "
                             f"cannot resume on this {T}-task stream")
        # The seen tasks point at this run's (device) copies of the stream.
        strategy.tasks = [stream.tasks[t.task_id] for t in strategy.tasks]
        if loop_cfg.threads > 0:
            torch.set_num_threads(loop_cfg.threads)
        gen = restore_rngs(resume)
        if log:
            log(f"[{strategy.name}] resuming after task {first}/{T}")
    run_start = time.perf_counter() - result.train_time_s
    for t in range(first, T):
        task = stream.tasks[t]
        timing: dict[str, float] = {"task": t}
        t0 = time.perf_counter()
        strategy.begin_task(task, loop_cfg.epochs, loop_cfg.batch_size)
        timing["begin_task_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        images = 0
        for epoch in range(loop_cfg.epochs):
            sums: dict[str, torch.Tensor] = {}
            batches = 0
            e0 = time.perf_counter()
            for xb, yb in strategy.train_batches(task, loop_cfg.batch_size, gen):
                if loop_cfg.augment != "none":
                    xb = random_crop(xb, padding, gen)
                    if loop_cfg.augment == "crop+flip":
                        xb = random_flip(xb, gen)
                with strategy.autocast():
                    terms = strategy.train_step(strategy.normalize(xb), yb)
                for k, v in terms.items():
                    sums[k] = sums[k] + v.float() if k in sums else v.float()
                batches += 1
                images += len(yb)
            # One host synchronisation per epoch: read the mean losses.
            means = {k: (v / max(batches, 1)).item() for k, v in sums.items()}
            if any(not math.isfinite(v) for v in means.values()):
                result.status = "diverged"
                result.error = f"loss became {means.get('loss')} in task {t} epoch {epoch}"
                break
            if log:
                rate = batches * loop_cfg.batch_size / max(time.perf_counter() - e0, 1e-9)
                terms_txt = " ".join(f"{k} {v:.4f}" for k, v in means.items())
                log(f"[{strategy.name}] task {t + 1}/{T} epoch {epoch + 1}/{loop_cfg.epochs} {terms_txt} ({rate:.0f} img/s)")
        timing["train_s"] = time.perf_counter() - t0
        timing["images_trained"] = images
        if result.status == "diverged":
            result.timings.append(timing)
            break

        t0 = time.perf_counter()
        strategy.end_task(task)
        timing["end_task_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        row_class, row_task, sizes = evaluate(strategy, stream, t, split)
        timing["eval_s"] = time.perf_counter() - t0
        result.acc_class_il.append(_pad_row(row_class, T))
        result.acc_task_il.append(_pad_row(row_task, T))
        result.eval_sizes = sizes
        result.timings.append(timing)
        result.train_time_s = time.perf_counter() - run_start
        result.memory_size = strategy.memory_size()
        result.num_params = strategy.num_parameters()
        result.extra = strategy.extra_report()
        result.metrics = result_metrics(result)
        if log:
            head = metrics_key(strategy.task_incremental_only).replace("_il", "-IL")
            row = row_task if strategy.task_incremental_only else row_class
            log(f"[{strategy.name}] after task {t + 1}/{T}: {head} acc " + " ".join(f"{100 * v:.1f}" for v in row))
        if t == T - 1:
            result.status = "completed"
        if checkpoint:
            checkpoint(capture(strategy, result, gen))
        if callback:
            callback(result)
    result.train_time_s = time.perf_counter() - run_start
    # Rows stay only for completed tasks, padded to the full width T, so the
    # matrix stays square k x k in metrics (k = tasks done).
    result.metrics = result_metrics(result)
    return result

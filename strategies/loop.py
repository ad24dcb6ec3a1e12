"""The one training / evaluation loop for every strategy (docs/ARCHITECTURE.md).

For each task t of the stream:

1. ``begin_task`` (new head, new extractor, memory, ...);
2. the task's training phases (``Strategy.phases``, ``strategies/phases.py``),
   in order: each phase's before-step, a fresh optimiser from
   ``Strategy.make_optimizer``, then its epochs of ``train_step`` over its
   batches (uint8 -> random crop/flip on the device when the phase asks for
   augmentation -> normalised float, channels_last, optional bf16 autocast);
3. ``end_task`` (memory selection, snapshots, Fisher, BN statistics, ...);
4. row t of two accuracy matrices on the evaluation split (val during a
   search, test in a rerun):

   - class-incremental: argmax over ALL classes seen so far (the default
     protocol of iCaRL, Rebuffi et al. 2017);
   - task-incremental: argmax inside task j's own classes (task identity given).

R[t, j] is the accuracy on task j's eval data after training through task t. A
callback receives the partial result after every task (the Tune trainable turns
it into a report). ``checkpoint`` receives a ``LoopState`` after every task
(``strategies/checkpoint.py``: strategy, result so far, RNG states), and
``resume=state`` continues such a state at the next task, bit-identically to a
run that was never interrupted.

Every phase -- the main training and the side phases (DER's classifier
re-balancing, PackNet's post-pruning retraining) -- runs through the same code:
loss terms are summed on the device and read once per epoch (no per-step host
synchronisation), and a NaN/inf epoch loss in ANY phase stops the run with
status ``diverged`` and an error naming the task, epoch and phase.

Per-task timings (``RunResult.timings``): ``begin_task_s``, ``train_s`` (all
phases, their before-steps included), ``images_trained`` (all phases),
``phases`` (per phase: ``name``, ``epochs``, ``images``, ``before_s`` -- the
before-step and the optimiser's construction -- and ``train_s``), ``end_task_s``
and ``eval_s``.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from core.metrics import summarize
from datasets.stream import Stream, Task, fidelity_subset
from strategies.base import STRATEGIES, RunContext, Strategy
from strategies.batch_ops import random_crop, random_flip
from strategies.checkpoint import LoopState, capture, restore_rngs
from strategies.phases import Phase
from core.config import ConfigError, bounded, check_value, config_from_dict, field_specs
from core.knobs import LOOP_KNOBS
from strategies.networks import BACKBONES
from core.result import RunResult, environment_info, metrics_key


@dataclasses.dataclass
class LoopConfig:
    """Protocol and hardware settings shared by all strategies of a comparison."""

    epochs: int = bounded(5, min=1, max=1000, help="training epochs per task")
    train_fraction: float = bounded(1.0, min=0.001, max=1.0, help="share of each class's training images per task "
                                    "(seeded by the run's seed; < 1: a cheaper fidelity, not the benchmark)")
    eval_fraction: float = bounded(1.0, min=0.001, max=1.0, help="share of each class's evaluation images per task "
                                   "(one fixed subset for every run; < 1: a cheaper fidelity, not the benchmark)")
    batch_size: int = bounded(128, min=2, max=65536, help="training batch size")
    backbone: str = bounded("simplecnn", choices=BACKBONES, help="feature extractor")
    pretrained: bool = bounded(False, help="ImageNet weights for vgg16 when cached locally")
    eval_split: str = bounded("val", choices=("val", "test"), help="split that fills the accuracy matrices")
    device: str = bounded("auto", help="auto, cpu, cuda or cuda:N")
    threads: int = bounded(0, min=0, max=1024, help="torch CPU threads (0 = the CPUs this process may use)")
    channels_last: bool = bounded(True, help="channels_last memory format")
    precision: str = bounded("fp32", choices=("fp32", "bf16"), help="bf16 = autocast mixed precision")
    augment: str = bounded("crop", choices=("none", "crop", "crop+flip"), help="batch augmentation (no flip for traffic signs)")
    crop_padding: int = bounded(-1, min=-1, max=64, help="random-crop padding in pixels (-1 = image size / 8)")
    eval_batch_size: int = bounded(1024, min=1, max=65536, help="evaluation batch size")
    seed: int = bounded(0, min=0, max=2**31 - 1, help="seed for init, data order and augmentation")


# The loop knobs a trial may override are LoopConfig fields (core/knobs.py names them
# without importing torch; this keeps the two lists from drifting apart).
assert set(LOOP_KNOBS) <= set(field_specs(LoopConfig)), LOOP_KNOBS


def with_loop_knobs(loop_cfg: LoopConfig, knobs: dict[str, Any] | None) -> LoopConfig:
    """``loop_cfg`` with a trial's (or a direct run's) loop knobs applied, each
    typed and bounded by ``LoopConfig`` like a ``--set``; other keys are refused."""
    if not knobs:
        return loop_cfg
    other = sorted(set(knobs) - set(LOOP_KNOBS))
    if other:
        raise ConfigError(f"loop: {', '.join(other)} cannot be set per run (per-run loop knobs: {', '.join(LOOP_KNOBS)})")
    return dataclasses.replace(loop_cfg, **{k: check_value(LoopConfig, k, v, owner="loop") for k, v in knobs.items()})


# Smallest image side each backbone can take (VGG-16: five 2x max-poolings).
MIN_IMAGE_SIDE = {"vgg16": 32}


class DivergedError(RuntimeError):
    """Training loss became NaN or infinite (the message says where)."""


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


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask (a container's, a
    ``taskset``'s or a cluster scheduler's limit), not the host's core count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # platforms without affinity masks
        return os.cpu_count() or 1


def resolve_threads(requested: int) -> int:
    """The one thread rule for searches, reruns and direct runs: a run uses the
    CPUs given to it. ``requested`` > 0 is that number (a search trial: the CPUs
    Ray allocated to it; a command line: ``--threads``); 0 means every CPU this
    process may use -- never torch's own default, which OMP_NUM_THREADS or the
    host's core count decide behind the caller's back. Oversubscription is what
    this prevents: two processes with two threads each on two cores ran 5-20x
    slower than one thread each (bench/README.md)."""
    return requested if requested > 0 else available_cpus()


def make_strategy(method: str, overrides: dict[str, Any] | None, stream: Stream, loop_cfg: LoopConfig) -> Strategy:
    """Validate the config and build the strategy (seeded, on the right device)."""
    config = strategy_config(method, overrides)
    side = min(stream.image_shape[1:])
    if side < MIN_IMAGE_SIDE.get(loop_cfg.backbone, 1):
        raise ConfigError(f"backbone {loop_cfg.backbone} needs images of at least {MIN_IMAGE_SIDE[loop_cfg.backbone]} px "
                          f"(its poolings); this stream's are {stream.image_shape[1]}x{stream.image_shape[2]}")
    device = resolve_device(loop_cfg.device)
    torch.set_num_threads(resolve_threads(loop_cfg.threads))
    torch.manual_seed(loop_cfg.seed)
    ctx = RunContext(
        num_classes_total=stream.num_classes,
        image_shape=stream.image_shape,
        channel_mean=stream.channel_mean,
        channel_std=stream.channel_std,
        loop=dataclasses.replace(loop_cfg),  # the strategy's own copy: a later change of loop_cfg is not seen
        device=device,
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



# -- training: the phases of one task ---------------------------------------------------

def crop_padding(loop_cfg: LoopConfig, image_shape: tuple[int, int, int]) -> int:
    """Random-crop padding in pixels: the configured one, or 1/8 of the image side."""
    return loop_cfg.crop_padding if loop_cfg.crop_padding >= 0 else max(image_shape[1] // 8, 1)


def augment_batch(xb: torch.Tensor, mode: str, padding: int, generator: torch.Generator) -> torch.Tensor:
    """The loop's augmentation of a uint8 batch (``LoopConfig.augment``), on its device."""
    if mode != "none":
        xb = random_crop(xb, padding, generator)
        if mode == "crop+flip":
            xb = random_flip(xb, generator)
    return xb


def start_phase(strategy: Strategy, phase: Phase, batch_size: int) -> None:
    """A phase's before-step, then its optimiser. The step count (for the
    schedule) and the parameters are read after the before-step, which may
    change both (DER's memory update, a re-initialised head)."""
    if phase.before is not None:
        phase.before()
    if phase.epochs > 0:
        steps = phase.epochs * phase.num_batches(batch_size)
        strategy.make_optimizer(phase.params(), steps, phase.lr, phase.schedule, phase.optimizer)


def train_phase(strategy: Strategy, phase: Phase, loop_cfg: LoopConfig, generator: torch.Generator,
                task_id: int, *, record: dict[str, Any] | None = None, log: Callable[[str], None] | None = None,
                where: str = "") -> dict[str, Any]:
    """Run one phase: before-step, optimiser, ``phase.epochs`` passes over its
    batches; return its timing record (``name``, ``epochs``, ``images``,
    ``before_s``, ``train_s``).

    ``generator`` is the loop's; the phase's own one replaces it when it has
    one. ``record`` (default: a new dict) is filled as the phase goes, so a
    diverged phase still reports what it did. Raises ``DivergedError`` naming
    ``task_id``, the epoch and the phase when an epoch's mean loss is NaN or
    infinite. ``where`` prefixes the log lines (e.g. "task 2/5").
    """
    record = {} if record is None else record
    record.update(name=phase.name, epochs=phase.epochs, images=0, before_s=0.0, train_s=0.0)
    t0 = time.perf_counter()
    start_phase(strategy, phase, loop_cfg.batch_size)
    t1 = time.perf_counter()
    record["before_s"] = t1 - t0
    gen = phase.generator if phase.generator is not None else generator
    mode = loop_cfg.augment if phase.augment else "none"
    padding = crop_padding(loop_cfg, strategy.ctx.image_shape)
    try:
        for epoch in range(phase.epochs):
            sums: dict[str, torch.Tensor] = {}
            batches = 0
            e0 = time.perf_counter()
            for xb, yb in phase.batches(loop_cfg.batch_size, gen):
                xb = augment_batch(xb, mode, padding, gen)
                with strategy.autocast():
                    terms = strategy.train_step(strategy.normalize(xb), yb)
                # Summed on the device: no host synchronisation per step.
                for k, v in terms.items():
                    sums[k] = sums[k] + v.float() if k in sums else v.float()
                batches += 1
                record["images"] += len(yb)
            # One host synchronisation per epoch: read the mean losses.
            means = {k: (v / max(batches, 1)).item() for k, v in sums.items()}
            if any(not math.isfinite(v) for v in means.values()):
                raise DivergedError(f"loss became {means.get('loss')} in task {task_id} epoch {epoch} "
                                    f"of phase {phase.name!r}")
            if log:
                rate = batches * loop_cfg.batch_size / max(time.perf_counter() - e0, 1e-9)
                terms_txt = " ".join(f"{k} {v:.4f}" for k, v in means.items())
                log(f"[{strategy.name}] {where} {phase.name} epoch {epoch + 1}/{phase.epochs} {terms_txt} ({rate:.0f} img/s)")
    finally:
        record["train_s"] = time.perf_counter() - t1
        # Each phase builds its own optimiser; none carries momentum into the
        # next phase or task, and a checkpoint then holds no optimiser state.
        strategy.optimizer = None
        strategy.scheduler = None
    return record


def train_task(strategy: Strategy, task: Task, loop_cfg: LoopConfig, generator: torch.Generator,
               timing: dict[str, Any], log: Callable[[str], None] | None = None, where: str = "") -> None:
    """Every phase of ``task``'s training, in order (between ``begin_task`` and
    ``end_task``). Fills ``timing``: ``train_s`` (all phases with their
    before-steps), ``images_trained`` and ``phases`` (one record per phase).
    Raises ``DivergedError`` (see ``train_phase``); the timing then covers the
    phases up to and including the diverged one."""
    t0 = time.perf_counter()
    records: list[dict[str, Any]] = []
    timing.update(train_s=0.0, images_trained=0, phases=records)
    try:
        for phase in strategy.phases(task, loop_cfg):
            records.append({})  # filled as the phase runs: kept if it diverges
            train_phase(strategy, phase, loop_cfg, generator, task.task_id, record=records[-1], log=log, where=where)
    finally:
        timing["train_s"] = time.perf_counter() - t0
        timing["images_trained"] = sum(r["images"] for r in records)


# -- evaluation: one row of the matrices ------------------------------------------------

def _evaluate_task(strategy: Strategy, stream: Stream, t: int, result: RunResult, timing: dict[str, Any],
                   log: Callable[[str], None] | None) -> None:
    """Fill row t of both matrices (padded to the stream's width) and the
    figures that change with it (memory, parameters, metrics so far)."""
    T = stream.num_tasks
    t0 = time.perf_counter()
    row_class, row_task, sizes = evaluate(strategy, stream, t, result.eval_split)
    timing["eval_s"] = time.perf_counter() - t0
    result.acc_class_il.append(_pad_row(row_class, T))
    result.acc_task_il.append(_pad_row(row_task, T))
    result.eval_sizes = sizes
    result.memory_size = strategy.memory_size()
    result.num_params = strategy.num_parameters()
    result.extra = strategy.extra_report()
    result.metrics = result_metrics(result)
    if log:
        head = metrics_key(strategy.task_incremental_only).replace("_il", "-IL")
        row = row_task if strategy.task_incremental_only else row_class
        log(f"[{strategy.name}] after task {t + 1}/{T}: {head} acc " + " ".join(f"{100 * v:.1f}" for v in row))


# -- the run ------------------------------------------------------------------------------

def check_eval_split(stream: Stream, split: str) -> None:
    """Every task must have images in the split it is scored on; the message
    says why this one has none, so the hint fits the case. The command lines
    call it before Ray starts or training begins."""
    empty = [t.task_id for t in stream.tasks if len(getattr(t, split)) == 0]
    if not empty:
        return
    where = f"task{'s' if len(empty) > 1 else ''} {', '.join(str(t + 1) for t in empty)} of {stream.num_tasks}"
    if split == "test":
        raise ConfigError(f"{where} {'have' if len(empty) > 1 else 'has'} no test images (the dataset has none for "
                          f"their classes): evaluate on the validation split (--eval val) or use data with a test set")
    fraction = stream.val_fraction
    if not fraction:
        raise ConfigError(f"eval_split='val' but the validation fraction is 0: use --val-fraction > 0 or evaluate on test")
    grouped = "by track" if stream.info.get("val_split") == "group" or getattr(stream, "val_split", None) == "group" \
        else "by image"
    raise ConfigError(f"{where} got no validation images with --val-fraction {fraction:g}: the split is made "
                      f"{grouped} and a class needs at least 2 {'tracks' if grouped == 'by track' else 'images'} "
                      f"to give one to validation (each class there has one)")


def _stream_on_device(stream: Stream, device: torch.device, split: str) -> Stream:
    """The stream with every split on the training device (uint8, so it fits),
    after checking that every task has images in the evaluation split."""
    check_eval_split(stream, split)
    tasks = [dataclasses.replace(t, train=t.train.to(device), val=t.val.to(device), test=t.test.to(device))
             for t in stream.tasks]
    return dataclasses.replace(stream, tasks=tasks)


def _start_result(strategy: Strategy, described: dict[str, Any], loop_cfg: LoopConfig) -> RunResult:
    """The empty record of a new run: what ran, on what, where."""
    return RunResult(
        method=strategy.name,
        config=dataclasses.asdict(strategy.config),
        # Results depend on the thread count (float reductions differ): record
        # the number torch really uses, not the request (0 = "all available").
        protocol={**dataclasses.asdict(loop_cfg), "threads": torch.get_num_threads()},
        stream=described,
        task_incremental_only=strategy.task_incremental_only,
        eval_split=loop_cfg.eval_split,
        environment=environment_info(),
    )


def _resume(strategy: Strategy, stream: Stream, loop_cfg: LoopConfig, state: LoopState,
            log: Callable[[str], None] | None) -> tuple[RunResult, torch.Generator]:
    """The saved result and the loop's generator of a run continued from ``state``;
    the global RNGs are set back to their saved states."""
    if state.strategy is not strategy:
        raise ValueError("run(strategy, ..., resume=state): pass state.strategy as the strategy")
    result = state.result
    T, first = stream.num_tasks, result.tasks_done
    if result.protocol != {**dataclasses.asdict(loop_cfg), "threads": resolve_threads(loop_cfg.threads)} and log:
        log(f"[{strategy.name}] resuming with a different loop config than the checkpoint's")
    if first > T or result.stream.get("num_tasks") != T:
        raise ValueError(f"checkpoint after {first} tasks of a {result.stream.get('num_tasks')}-task stream "
                         f"cannot resume on this {T}-task stream")
    # The seen tasks point at this run's (device) copies of the stream.
    strategy.tasks = [stream.tasks[t.task_id] for t in strategy.tasks]
    torch.set_num_threads(resolve_threads(loop_cfg.threads))
    gen = restore_rngs(state)
    if log:
        log(f"[{strategy.name}] resuming after task {first}/{T}")
    return result, gen


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
    # The result describes the benchmark's stream; a cheaper fidelity (a share of
    # each class's images) is recorded in the protocol and seen in the sizes.
    described = stream.describe()
    stream = fidelity_subset(stream, loop_cfg.train_fraction, loop_cfg.eval_fraction, loop_cfg.seed)
    stream = _stream_on_device(stream, strategy.device, loop_cfg.eval_split)
    T = stream.num_tasks
    if resume is None:
        # The loop's generator drives the main phase's batch order and augmentation.
        result, gen = _start_result(strategy, described, loop_cfg), torch.Generator().manual_seed(loop_cfg.seed)
    else:
        result, gen = _resume(strategy, stream, loop_cfg, resume, log)
    # train_time_s accumulates over resumes: start the clock that far back.
    run_start = time.perf_counter() - result.train_time_s
    for t in range(result.tasks_done, T):
        task = stream.tasks[t]
        timing: dict[str, Any] = {"task": t}

        # 1. The strategy prepares the task (head, extractor, memory, ...).
        t0 = time.perf_counter()
        strategy.begin_task(task, loop_cfg.epochs, loop_cfg.batch_size)
        timing["begin_task_s"] = time.perf_counter() - t0

        # 2. Its training phases, in order; a NaN/inf loss in any of them ends
        #    the run as "diverged", keeping the rows of the tasks completed.
        try:
            train_task(strategy, task, loop_cfg, gen, timing, log=log, where=f"task {t + 1}/{T}")
        except DivergedError as exc:
            result.status, result.error = "diverged", str(exc)
            result.timings.append(timing)
            break

        # 3. After training: memory selection, snapshots, Fisher, BN statistics...
        t0 = time.perf_counter()
        strategy.end_task(task)
        timing["end_task_s"] = time.perf_counter() - t0

        # 4. Row t of the accuracy matrices on the evaluation split.
        _evaluate_task(strategy, stream, t, result, timing, log)
        result.timings.append(timing)
        result.train_time_s = time.perf_counter() - run_start
        if t == T - 1:
            result.status = "completed"

        # 5. Checkpoint (serialised by the caller), then report.
        if checkpoint:
            checkpoint(capture(strategy, result, gen))
        if callback:
            callback(result)
    result.train_time_s = time.perf_counter() - run_start
    # Rows stay only for completed tasks, padded to the full width T, so the
    # matrix stays square k x k in metrics (k = tasks done).
    result.metrics = result_metrics(result)
    return result

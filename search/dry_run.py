"""``search/run.py --dry-run``: what a search would do, without doing it.

After every check a real search makes (method, ranges, data, disk), it prints
the protocol, the stream task by task, the space that will be searched (after
the ranges are clipped to the data), the fixed values, how many trials run at
once, and an estimate of the wall time; then it exits, having written nothing.

The estimate comes from a measured step, not a table: one strategy at the
middle of the searched space trains a few batches of the first task on this
machine, with the threads a trial would get, and the time per image is scaled
by the images a trial trains (every task's training images, plus a rehearsal
method's memory from the second task on, times the epochs) and its evaluations
(one forward pass per validation image of every task seen, after each task,
counted at a third of a training image: a forward pass without the backward).
Phases after the main one (DER's balancing, PackNet's retraining), the
worker's start-up and a growing model (DER) are not in it, so it is a lower
bound for those methods; with early stopping (--asha, --mo-asha) it is the
full-fidelity time, an upper bound.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import time
from typing import Any

from core.space import Dist

# Batches timed after the warm-up ones (the first steps allocate and pick kernels).
WARMUP_BATCHES = 2
TIMED_BATCHES = 6
# An evaluation image costs about a third of a training image (forward only).
EVAL_COST = 1 / 3


def middle(dist: Dist) -> Any:
    """The middle of a searched range: the geometric mean on a log scale, else
    the arithmetic one (rounded for an int); a categorical's first choice."""
    if dist.type == "categorical":
        return dist.choices[0]
    low, high = float(dist.low), float(dist.high)
    mid = math.sqrt(low * high) if dist.log and low > 0 else (low + high) / 2
    return int(round(mid)) if dist.type == "int" else mid


def fmt_dist(dist: Dist) -> str:
    if dist.type == "categorical":
        return "one of " + ", ".join(str(c) for c in dist.choices)
    scale = " (log scale)" if dist.log else ""
    return f"{dist.type} in [{dist.low:g}, {dist.high:g}]{scale}"


def space_lines(space_asked: dict[str, Dist], space: dict[str, Dist], kinds: dict[str, str]) -> list[str]:
    lines = []
    for key, dist in space.items():
        note = ""
        asked = space_asked.get(key)
        if asked is not None and asked != dist:
            note = f"  (clipped from {fmt_dist(asked)} to fit the stream)"
        lines.append(f"  {key:16s} {fmt_dist(dist)}  [{kinds.get(key, '?')}]{note}")
    return lines or ["  (nothing: every knob is fixed)"]


def memory_images(config: Any, classes_seen: int, images_seen: int) -> int:
    """Exemplars a rehearsal strategy trains on beside a new task's images."""
    memory = int(getattr(config, "memory", 0) or 0)
    per_class = int(getattr(config, "memory_per_class", 0) or 0)
    return min(images_seen, memory or per_class * classes_seen)


def images_per_trial(stream, config: Any, epochs: int) -> tuple[int, int]:
    """(training images, evaluation images) of one trial on ``stream``."""
    train = evaluated = 0
    classes_seen = images_seen = 0
    val_seen = 0
    for t, task in enumerate(stream.tasks):
        extra = memory_images(config, classes_seen, images_seen) if t else 0
        train += epochs * (len(task.train) + extra)
        classes_seen += task.num_classes
        images_seen += len(task.train)
        val_seen += len(task.val)
        evaluated += val_seen
    return train, evaluated


def measure_seconds_per_image(method: str, params: dict[str, Any], stream, loop, threads: int) -> float:
    """Seconds per training image of ``method`` with ``params`` on the first task,
    timed over a few batches of its main phase with ``threads`` torch threads."""
    import torch

    from core.knobs import split_params
    from strategies.loop import make_strategy, train_phase, with_loop_knobs

    strategy_part, loop_part = split_params(params)
    cfg = dataclasses.replace(with_loop_knobs(loop, loop_part), threads=threads, device="cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        strategy = make_strategy(method, strategy_part, stream, cfg)
        task = stream.tasks[0]
        strategy.begin_task(task, cfg.epochs, cfg.batch_size)
        phase = strategy.phases(task, cfg)[0]
        gen = torch.Generator().manual_seed(0)

        def short(n: int):
            return dataclasses.replace(
                phase, epochs=1, batches=lambda bs, g: itertools.islice(phase.batches(bs, g), n),
                num_batches=lambda bs: min(n, phase.num_batches(bs)))

        train_phase(strategy, short(WARMUP_BATCHES), cfg, gen, 0)
        record = train_phase(strategy, short(TIMED_BATCHES), cfg, gen, 0)
    finally:
        torch.set_num_threads(before)
    return record["train_s"] / max(record["images"], 1)


def concurrency(args, trials: int) -> tuple[int, str]:
    """(trials at once, how that was worked out) for a local search."""
    from strategies.loop import available_cpus

    cpus = available_cpus()
    per_trial = 1.0 if args.cpus_per_trial is None else args.cpus_per_trial
    at_once = max(1, int(cpus // per_trial))
    how = f"{cpus} CPUs / {per_trial:g} per trial"
    if args.max_concurrent is not None and args.max_concurrent < at_once:
        at_once, how = args.max_concurrent, f"{how}, capped by --max-concurrent"
    return min(at_once, trials), how


def print_dry_run(args, *, method: str, space_asked: dict[str, Dist], space: dict[str, Dist],
                  fixed: dict[str, Any], spec: dict[str, Any], stream, loop, need, results_dir) -> None:
    from search.run import MB

    trials = spec["trials"]
    proto = spec["stream_protocol"]
    print(f"dry run: nothing is written; the search would go to {results_dir}")
    print(f"\nmethod: {method}; {trials} trials; objectives "
          + ", ".join(f"{n} ({s})" for n, s in spec["objectives"])
          + ("; early stopping: ASHA" if spec["asha"] else "; early stopping: MO-ASHA" if spec.get("mo_asha")
             else "; successive halving over fidelities" if spec.get("fidelity_rungs") else ""))
    print("protocol (fixed for every trial): "
          + ", ".join(f"{k}={v}" for k, v in proto.items() if v is not None and k != "data_dir")
          + f"; epochs/task {loop.epochs}, batch {loop.batch_size}, {loop.backbone}, augment {loop.augment}, "
            f"precision {loop.precision}; objectives on the validation split")
    print(f"\nstream: {stream.name}, {stream.num_tasks} tasks, {stream.num_classes} classes, images "
          f"{'x'.join(str(s) for s in stream.image_shape)}")
    names = stream.task_class_names()
    for t, task in enumerate(stream.tasks):
        shown = names[t] if names else task.classes
        listed = ", ".join(str(c) for c in shown[:8]) + (", ..." if len(shown) > 8 else "")
        print(f"  task {t + 1}: {task.num_classes} classes ({listed}); train {len(task.train)}, "
              f"val {len(task.val)}, test {len(task.test)} images")
    kinds = spec.get("knob_kinds") or {}
    print("\nsearched space:")
    print("\n".join(space_lines(space_asked, space, kinds)))
    from search.spaces import method_loop_defaults

    own = method_loop_defaults(method)

    def said(key: str, value: Any) -> str:  # a method's own loop default replaces the protocol's value
        if key in own and own[key] == value and getattr(loop, key, value) != value:
            return f"{key}={value} ({method}'s default, instead of {getattr(loop, key)})"
        return f"{key}={value}"
    print("fixed: " + (", ".join(said(k, v) for k, v in fixed.items()) if fixed else "nothing (method defaults)"))

    if args.address:
        print(f"\nparallelism: on the Ray cluster at {args.address} (not contacted by --dry-run); "
              f"{args.cpus_per_trial or 1:g} CPU(s) per trial")
        at_once = None
    else:
        at_once, how = concurrency(args, trials)
        gpus = f", {args.gpus_per_trial:g} GPU per trial" if args.gpus_per_trial else ""
        print(f"\nparallelism: {at_once} trial(s) at once ({how}){gpus}")
    threads = max(1, int(args.cpus_per_trial or 1))
    probe = {**fixed, **{k: middle(d) for k, d in space.items()}}
    per_image = measure_seconds_per_image(method, probe, stream, loop, threads)
    from core.knobs import split_params
    from datasets.stream import fidelity_subset
    from strategies.loop import strategy_config, with_loop_knobs
    strategy_part, loop_part = split_params(probe)
    probe_loop = with_loop_knobs(loop, loop_part)
    probe_cfg = strategy_config(method, strategy_part)

    def run_estimate(lc) -> tuple[int, int, float]:
        """(images trained, images evaluated, seconds) of one run with loop config ``lc``;
        at a train_fraction / eval_fraction below 1 a run sees that share of the stream."""
        seen = fidelity_subset(stream, lc.train_fraction, lc.eval_fraction, lc.seed)
        train, evaluated = images_per_trial(seen, probe_cfg, lc.epochs)
        return train, evaluated, per_image * (train + EVAL_COST * evaluated)

    train, evaluated, per_trial = run_estimate(probe_loop)
    print(f"estimate: {per_image * 1e3:.2f} ms per training image (measured on this machine: "
          f"{TIMED_BATCHES} batches of task 1, {threads} thread(s), at the middle of the space: "
          + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in probe.items())
          + f"); a trial trains ~{train:,} images and evaluates ~{evaluated:,}: ~{_duration(per_trial)} per trial")
    if at_once is not None:
        waves = math.ceil(trials / at_once)
        print(f"  ~{_duration(per_trial * waves)} for the search ({waves} round(s) of {at_once}); a lower bound for "
              f"methods with extra phases (der, packnet) and an upper bound with early stopping")
    if spec.get("fidelity_rungs"):
        print_fidelity_plan(spec, trials, loop=probe_loop, run_seconds=lambda lc: run_estimate(lc)[2],
                            full_trial=per_trial, at_once=at_once)
    k = int(spec.get("confirm_seeds") or 0)
    if k:
        print(f"then the front confirmation (--confirm-seeds {k}): each front candidate rerun with {k} more "
              f"seed(s), {k} trial(s) per front point (~{_duration(per_trial)} each; the front's size is known "
              f"only after the search)")
    print(f"disk: about {need.total / MB:.0f} MB ({need.per_checkpoint / MB:.1f} MB per trial checkpoint; "
          f"tune/ checkpoints are removed after a finished search unless --keep-checkpoints)")


def print_fidelity_plan(spec: dict[str, Any], trials: int, *, loop, run_seconds, full_trial: float,
                        at_once: int | None) -> None:
    """The successive-halving plan (search/fidelity_halving.py): per rung its
    fidelity, about how many trials reach it (trials / eta^k, as synchronous
    halving would; the asynchronous scheduler promotes a few more, the first
    trials at a rung having little to compete with) and the estimated time of
    one run there (``run_seconds`` of its loop config: the same images-based
    estimate as a full trial)."""
    from core.fidelity import describe, rung_overrides
    from strategies.loop import with_loop_knobs

    cheap, eta = spec["fidelity_rungs"], int(spec["reduction_factor"])
    print(f"successive halving over fidelities (1 in {eta} goes on; promotion rule {spec.get('promotion', 'split')}):")
    total = 0.0
    for k in range(len(cheap) + 1):
        run = run_seconds(with_loop_knobs(loop, rung_overrides(cheap, k)))
        n = math.ceil(trials / eta ** k)
        total += n * run
        print(f"  rung {k + 1} ({describe(rung_overrides(cheap, k))}): ~{n} trial(s), ~{_duration(run)} per run")
    share = total / (trials * full_trial) if full_trial > 0 else math.nan
    wall = f"; ~{_duration(total / at_once)} at {at_once} at once" if at_once else ""
    print(f"  ~{_duration(total)} of trial time in all{wall}: ~{100 * share:.0f} % of every trial at full fidelity "
          f"(images only: evaluation and end-of-task work that do not shrink with the epochs make it more)")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

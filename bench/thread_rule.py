"""The thread rule (strategies/loop.py ``resolve_threads``) against torch's
default, with and without a competing load (issue "Search cost", item 3).

The rule: a run uses the CPUs given to it -- a search trial the CPUs Ray
allocated (1 by default), a direct run or a rerun ``--threads`` or, with 0,
every CPU this process may use -- never torch's own default, which
OMP_NUM_THREADS or the host decide. What that buys is measured as training
images/s of the project's loop (``bench/throughput.py``'s ``loop`` variant:
finetune on a one-task GTSRB-shaped stream, simplecnn, batch 128, crop) in
separate processes started together, so the scenarios are the ones a user
meets:

- ``alone``: one run on the machine, rule (threads = CPUs) vs 1 thread;
- ``2 runs``: two runs at once on a 2-CPU machine (a search's two trials, or
  two reruns): the rule's 1 thread each against 2 each (torch's default on
  this machine: every core, i.e. oversubscribed);
- ``+ load``: the same with a competing CPU-bound process (another user's job:
  a pure-Python busy loop pinned to nothing) running the whole time.

Every scenario is run ``--repeats`` times, interleaved, and the median per run
is printed with the ratio against the rule's figure in the same scenario, so
machine noise from outside hits all variants alike. Usage:

    python bench/thread_rule.py                 # ~4 min on 2 cores
    python bench/thread_rule.py --images 6400 --repeats 1
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def worker(threads: int, images: int, precision: str) -> None:
    """One run: print its training images/s as JSON (a subprocess of the bench)."""
    import torch

    from bench.throughput import bench_loop, make_arrays
    from datasets import build_stream

    torch.set_num_threads(threads)
    stream = build_stream(make_arrays(images), num_tasks=1, val_fraction=0.0, seed=0)
    rate = bench_loop("simplecnn", stream, precision, threads)
    print(json.dumps({"threads": torch.get_num_threads(), "img_s": rate}), flush=True)


def _busy() -> subprocess.Popen:
    """A competing CPU-bound process: one core's worth of pure-Python work."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _runs(threads: list[int], images: int, precision: str, load: bool) -> list[float]:
    """Start one worker per entry of ``threads`` at once; their images/s."""
    busy = _busy() if load else None
    try:
        if busy is not None:
            time.sleep(1.0)  # the load is running before training starts
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", "--threads", str(t), "--images", str(images),
                                   "--precision", precision], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
                 for t in threads]
        rates = []
        for p in procs:
            out, _ = p.communicate(timeout=1800)
            if p.returncode != 0:
                raise SystemExit(f"thread_rule: a worker failed (exit {p.returncode})")
            rates.append(json.loads(out.strip().splitlines()[-1])["img_s"])
        return rates
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=12800, help="training images per run")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median reported)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.threads, args.images, args.precision)
        return 0

    from core.machine import machine_line
    from strategies.loop import available_cpus

    cpus = available_cpus()
    print(f"# {machine_line()}")
    print(f"# training images/s per run (median of {args.repeats} interleaved rounds, {args.images} images each), "
          f"simplecnn, batch 128, crop, {args.precision}; load = one busy Python process")
    # (scenario, variant, threads of each run at once, competing load)
    cases = [("alone", f"rule: {cpus} thread(s)", [cpus], False),
             ("alone", "1 thread", [1], False),
             ("2 runs", "rule: 1 thread each", [1, 1], False),
             ("2 runs", f"torch default: {cpus} each", [cpus, cpus], False),
             ("alone + load", f"rule: {cpus} thread(s)", [cpus], True),
             ("alone + load", "1 thread", [1], True),
             ("2 runs + load", "rule: 1 thread each", [1, 1], True),
             ("2 runs + load", f"torch default: {cpus} each", [cpus, cpus], True)]
    rates: dict[int, list[list[float]]] = {i: [] for i in range(len(cases))}
    for _ in range(args.repeats):
        for i, (_, _, threads, load) in enumerate(cases):
            rates[i].append(_runs(threads, args.images, args.precision, load))
    print(f"{'scenario':15s} {'variant':24s} {'img/s per run':>14s} {'sum img/s':>10s} {'vs rule':>8s}")
    rule_sum: dict[str, float] = {}
    for i, (scenario, variant, threads, _) in enumerate(cases):
        per_run = statistics.median(r for rounds in rates[i] for r in rounds)
        total = statistics.median(sum(rounds) for rounds in rates[i])
        if variant.startswith("rule"):
            rule_sum[scenario] = total
        print(f"{scenario:15s} {variant:24s} {per_run:14.0f} {total:10.0f} {total / rule_sum[scenario]:8.2f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

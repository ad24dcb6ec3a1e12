"""The runs of search/rerun.py: planned, then trained through Ray or in this process.

``rerun.py`` names the configs (a search's picks and the baselines, or one
``--method``) and the seeds; ``plan_runs`` turns them into one ``Run`` per
(config, seed) and keeps the ones already finished (``finished_run``: same
method, config, protocol -- threads included -- and stream). The others are
trained by

- ``train_through_ray``: one Ray task per run (``num_cpus`` = CPUs per run,
  ``num_gpus`` = GPUs per run, checked against the cluster as a search's trials
  are: search/run.py ``ray_resources``). The stream is loaded once by the driver
  and put in the object store. A task's torch threads are its CPUs (the one
  thread rule, strategies/loop.py ``resolve_threads``) and its device is CUDA
  only when Ray gave it a GPU (search/trainable.py ``trial_device``). The task
  RETURNS its result and the driver writes it: the driver holds the output
  folder's lock, and on a cluster (``--address``) a worker does not see the
  driver's disk. The driver hands Ray as many runs as fit at once (per node:
  its CPUs over the CPUs per run, and its GPUs over the GPUs per run) and the
  next one as soon as one ends, so a "started" line means the run got its
  slot;
- ``train_in_process``: the same runs one after another in this process
  (``--sequential``, or a command with a single run).

Either way a run that diverges, raises or loses its worker is reported in the
live view and the others go on; ``RunsFailed`` then names every failed
(config, seed) with its reason in one line, and the same command reruns only
those (every finished seed is kept). The live view is a search's
(search/run.py ``progress_line``): ``[12:03:41] run icarl #3 (ab12_00003)
seed 1 started``, ``... finished: final_acc 77.5% forgetting 6.3% | 3/8 runs
done, 2 running | 95 s/run, elapsed 4.1 min``.

Every result.json written here adds to the loop's record (docs/RESULT_FORMAT.md)
where and when the run trained: ``through`` (``ray`` or ``in-process``),
``node`` (Ray node id, hostname), ``pid``, and ``started`` / ``ended`` (Unix
seconds), so overlapping runs can be seen in the files.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable

from core.errors import UserError
from core.result import metrics_key

# What the live view shows of a finished run (as a search shows its objectives).
SHOWN = ("final_acc", "forgetting")


class RunsFailed(UserError):
    """Some runs of a rerun diverged, raised or lost their worker; the rest are kept."""


@dataclasses.dataclass
class Run:
    """One (config, seed) run: what to train and where its result.json goes."""

    label: str                 # the config: "icarl #3 (a1b2c_00003)", "finetune", or the direct run's method
    method: str
    params: dict[str, Any]     # the strategy's overrides
    loop: Any                  # its LoopConfig: this seed, these threads
    path: Path                 # .../seed<k>/result.json

    @property
    def name(self) -> str:
        return f"{self.label} seed {self.loop.seed}"


def plan_runs(configs: list[tuple[str, str, dict[str, Any], Any, Path]], seeds: list[int], stream,
              threads: int) -> tuple[list[Run], dict[Path, dict[str, Any]]]:
    """Every (config, seed) as a ``Run`` with ``threads`` torch threads, and the
    finished records of those kept (by result.json path).

    ``configs``: (label, method, strategy overrides, LoopConfig, run folder).
    Each config is built once here, on the CPU, before anything trains: a
    config that cannot run on this stream (memory larger than the stream, a
    backbone too large for the images) is refused now in one line, and its
    typed form is what a finished record must match."""
    import strategies  # noqa: F401  (registers the strategies)
    from search.rerun import finished_run
    from strategies.loop import make_strategy

    stream_json = json.loads(json.dumps(stream.describe()))
    runs: list[Run] = []
    kept: dict[Path, dict[str, Any]] = {}
    for label, method, params, loop, folder in configs:
        base = dataclasses.replace(loop, threads=threads)
        strategy = make_strategy(method, params, stream, dataclasses.replace(base, device="cpu", seed=seeds[0]))
        # Compared in their JSON form: a list knob (lr_milestones) is a tuple here, a list on disk.
        config = json.loads(json.dumps(dataclasses.asdict(strategy.config)))
        for seed in seeds:
            cfg = dataclasses.replace(base, seed=seed)
            run = Run(label, method, params, cfg, folder / f"seed{seed}" / "result.json")
            runs.append(run)
            earlier = finished_run(run.path, {"method": strategy.name, "config": config,
                                              "protocol": json.loads(json.dumps(dataclasses.asdict(cfg))),
                                              "stream": stream_json})
            if earlier is not None:
                kept[run.path] = earlier
                print(f"{run.name}: kept the finished run in {run.path.parent}", file=sys.stderr, flush=True)
        del strategy
    return runs, kept


def where_it_ran(record: dict[str, Any], through: str, started: float, ray_node_id: str | None = None) -> dict[str, Any]:
    """``record`` with where and when it trained (module docstring)."""
    return {**record, "through": through, "node": {"ray_node_id": ray_node_id, "hostname": socket.gethostname()},
            "pid": os.getpid(), "started": started, "ended": time.time()}


def failure_reason(record: dict[str, Any]) -> str | None:
    """Why a returned record is not a finished run (None when it is)."""
    if record.get("status") == "completed":
        return None
    return f"{record.get('status')}: {record.get('error')}"


class RunProgress:
    """The live view of a rerun's runs, in a search's format (search/run.py)."""

    def __init__(self, total: int, kept: int) -> None:
        self.total, self.done, self.failed = total, kept, 0
        self.running: dict[str, float] = {}
        self.durations: list[float] = []
        self.t0 = time.time()

    def line(self, text: str) -> None:
        from search.run import progress_line
        progress_line(text)

    def started(self, run: Run) -> None:
        self.running[run.name] = time.time()
        self.line(f"run {run.name} started")

    def finished(self, run: Run, record: dict[str, Any] | None, reason: str | None) -> None:
        from search.run import format_pace, format_value

        self.durations.append(time.time() - self.running.pop(run.name, time.time()))
        self.done += 1
        if reason is not None:
            self.failed += 1
            what = f"FAILED ({reason})"
        else:
            m = (record.get("metrics") or {}).get(metrics_key(record["task_incremental_only"])) or {}
            what = "finished: " + " ".join(f"{n} {format_value(n, m.get(n))}" for n in SHOWN)
        failed = f" ({self.failed} failed)" if self.failed else ""
        self.line(f"run {run.name} {what} | {self.done}/{self.total} runs done{failed}, {len(self.running)} running | "
                  + format_pace(self.durations, self.t0, "run"))


def train_in_process(runs: list[Run], stream, progress: RunProgress, write: Callable[[Run, dict], None],
                     log: Callable[[str], None] | None) -> list[tuple[Run, str]]:
    """Train ``runs`` one after another in this process; (run, reason) of each
    that diverged. An exception stops it with its traceback (the debugging path)."""
    from strategies.loop import make_strategy, run as train

    failures = []
    for r in runs:
        progress.started(r)
        started = time.time()
        result = train(make_strategy(r.method, r.params, stream, r.loop), stream, r.loop, log=log)
        record = where_it_ran(result.to_dict(), "in-process", started)
        write(r, record)
        reason = failure_reason(record)
        if reason is not None:
            failures.append((r, reason))
        progress.finished(r, record, reason)
    return failures


def train_one(method: str, params: dict[str, Any], loop, stream, gpus: float,
              strategy_modules: list[str]) -> dict[str, Any]:
    """The Ray task: one run, its result as a dict (the driver writes it).

    ``loop.threads`` is the CPUs Ray gives the task (the driver asked for that
    many); the device is ``trial_device``'s: CUDA only with a GPU from Ray."""
    import ray

    import strategies  # noqa: F401  (registers the strategies in this worker)
    from search.trainable import trial_device
    from strategies.loop import make_strategy, run as train
    from strategies.plugins import load_strategy_modules

    started = time.time()
    load_strategy_modules(strategy_modules)  # a user's strategy (--strategy-module) registers in this worker too
    cfg = dataclasses.replace(loop, device=trial_device(str(loop.device), gpus))
    result = train(make_strategy(method, params, stream, cfg), stream, cfg, log=None)
    return where_it_ran(result.to_dict(), "ray", started, ray.get_runtime_context().get_node_id())


def concurrent_slots(cpus: float, gpus: float) -> int:
    """How many runs of ``cpus`` CPUs and ``gpus`` GPUs the cluster holds at once
    (a run lives on one node)."""
    import ray

    total = 0
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        have = node.get("Resources") or {}
        fit = math.floor(have.get("CPU", 0) / cpus + 1e-9)
        if gpus > 0:
            fit = min(fit, math.floor(have.get("GPU", 0) / gpus + 1e-9))
        total += fit
    return max(total, 1)


def task_error(exc: BaseException) -> str:
    """One line for a task that raised (the task's own exception) or whose
    worker died (Ray's error)."""
    cause = getattr(exc, "cause", None) or exc
    text = next((ln.strip() for ln in str(cause).splitlines() if ln.strip()), "")
    return f"{type(cause).__name__}: {text}"[:300]


def train_through_ray(runs: list[Run], stream, progress: RunProgress, write: Callable[[Run, dict], None], *,
                      address: str | None, cpus: float, gpus: float | None, device: str,
                      strategy_modules: list[str], max_retries: int = 2) -> list[tuple[Run, str]]:
    """Train ``runs`` as Ray tasks (module docstring); (run, reason) of each that
    failed. A task whose worker died is started again from scratch up to
    ``max_retries`` times (same numbers: the run is seeded)."""
    import ray

    from search.run import init_ray, ray_resources

    init_ray(address)
    try:
        resources = ray_resources(cpus, gpus, device, address, flags=("--cpus-per-run", "--gpus-per-run"),
                                  what="runs")
        slots = concurrent_slots(resources["cpu"], resources["gpu"])
        threads = runs[0].loop.threads
        where = f"the Ray cluster at {address}" if address else "Ray on this machine"
        gpu_text = f", {resources['gpu']:g} GPU" if resources["gpu"] else ""
        progress.line(f"{len(runs)} run(s) to train through {where}: up to {slots} at a time, each with "
                      f"{resources['cpu']:g} CPU ({threads} thread{'s' if threads > 1 else ''}){gpu_text}")
        stream_ref = ray.put(stream)
        task = ray.remote(train_one).options(num_cpus=resources["cpu"], num_gpus=resources["gpu"],
                                             max_retries=max_retries)
        queue, running, failures = list(runs), {}, []
        while queue or running:
            while queue and len(running) < slots:
                r = queue.pop(0)
                running[task.remote(r.method, r.params, r.loop, stream_ref, resources["gpu"], strategy_modules)] = r
                progress.started(r)
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                r = running.pop(ref)
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    reason = task_error(exc)
                    failures.append((r, reason))
                    progress.finished(r, None, reason)
                    continue
                write(r, record)
                reason = failure_reason(record)
                if reason is not None:
                    failures.append((r, reason))
                progress.finished(r, record, reason)
        return failures
    finally:
        ray.shutdown()


def raise_if_failed(failures: list[tuple[Run, str]], total: int) -> None:
    """``RunsFailed`` naming every failed (config, seed) and why, in one line."""
    if not failures:
        return
    names = "; ".join(f"{r.name}: {reason}" for r, reason in failures)
    rest = ("; the finished runs are kept and the same command reruns only the failed ones"
            if len(failures) < total else "")
    raise RunsFailed(f"{len(failures)} of {total} run{'s' if total > 1 else ''} failed{rest}: {names}")

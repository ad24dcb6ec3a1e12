"""The Ray Tune function trainable: one trial = one run of the shared loop.

How it fits the search:
- the stream comes from the driver through Ray's object store
  (``tune.with_parameters``), so no trial re-reads the dataset from disk;
- objectives are measured on the VALIDATION split;
- the trial reports after every task (``tasks_done`` is the time axis an ASHA
  scheduler uses) and its LAST report holds the final metrics, which is what
  Optuna reads for a multi-objective study; every report also carries the
  task-IL plasticity (``core.feasibility.REPORT_KEY``), the input of the
  did-not-learn rule that the searcher and the MO-ASHA scheduler apply, and
  result.json records the rule's verdict (``feasible``, ``infeasible_reason``);
- torch threads = the CPUs Ray gave the trial (two processes with two threads
  each on two cores collapse to a fraction of the throughput);
- the trial writes its own ``trials/<id>/result.json`` after every task (atomic),
  so a report can be rebuilt from the folder even if the driver dies;
- the result records where the trial ran (``node``: Ray node id and hostname),
  so a search on a cluster shows how its trials spread over the nodes;
- a diverged (NaN/inf) or crashing trial writes its result with the error and
  then raises, so Tune marks it ERROR, Optuna records it as failed, the search
  goes on, and it never reaches a front;
- faults: every report after a task carries a Tune checkpoint, the loop's
  ``LoopState`` (``strategies/checkpoint.py``: strategy, result so far, RNG
  states). A trial whose worker died is restarted by Tune (``FailureConfig``)
  and, through ``tune.get_checkpoint()``, continues after its last finished
  task with the same numbers an uninterrupted run gives. result.json records
  the worker's ``pid`` and ``restores`` (the tasks_done of each restart).
"""
from __future__ import annotations

import json
import logging
import math
import pickle
import os
import socket
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from core.feasibility import DEFAULT_MARGIN, REPORT_KEY
from core.feasibility import check_result as check_feasibility
from core.fidelity import FIDELITY_TEXT_KEY, RECORD_KEY, RUNG_DONE_KEY, RUNG_KEY, TOP_KEY, describe, rung_overrides
from core.objectives import SUMMARY_KEYS
from core.result import (CONFIRM_SEED_KEY, CONFIRMS_KEY, META_KEYS, METHOD_KEY, TRIAL_NUMBER_KEY, metrics_key,
                         task_seconds)

# Metrics reported to Tune after each task: the summary metrics (fractions),
# plus tasks done, memory (images), parameters and train time.
REPORTED = SUMMARY_KEYS


class TrialFailed(RuntimeError):
    """Raised inside a trial whose training diverged."""


def tune_metrics(result) -> dict[str, Any]:
    """The flat dict a trial reports to Tune for a (partial) RunResult."""
    m = result.metrics.get(metrics_key(result.task_incremental_only)) or {}
    out = {name: float(m.get(name, math.nan)) for name in REPORTED}
    out[REPORT_KEY] = float((result.metrics.get("task_il") or {}).get("plasticity", math.nan))
    out.update(tasks_done=result.tasks_done, memory=int(result.memory_size), num_params=int(result.num_params),
               train_time_s=float(result.train_time_s), **last_task_cost(result.timings))
    return out


def last_task_cost(timings: list[dict[str, Any]]) -> dict[str, float]:
    """The live log's figures for the task just done: images trained and the
    task's seconds (begin, training phases, end, evaluation)."""
    if not timings:
        return {"task_images": 0.0, "task_seconds": 0.0}
    last = timings[-1]
    return {"task_images": float(last.get("images_trained") or 0.0), "task_seconds": task_seconds(last)}


def rung_summary(rung: int, cheap: list[dict[str, Any]], result) -> dict[str, Any]:
    """What result.json keeps of a cheap rung's run once the trial is promoted:
    its overrides, the metrics it reported (the scheduler's input, rebuilt from
    here on resume), its seconds and images trained."""
    images = sum(float(t.get("images_trained") or 0.0) for t in result.timings)
    return {"rung": rung, "overrides": rung_overrides(cheap, rung), "metrics": tune_metrics(result),
            "seconds": sum(task_seconds(t) for t in result.timings), "images_trained": images}


def record_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """The flat dict ``tune_metrics`` gives, read back from a finished result.json."""
    m = (record.get("metrics") or {}).get(metrics_key(bool(record.get("task_incremental_only")))) or {}
    out = {name: float(m[name]) if m.get(name) is not None else math.nan for name in REPORTED}
    task_il = (record.get("metrics") or {}).get("task_il") or {}
    out[REPORT_KEY] = float(task_il["plasticity"]) if task_il.get("plasticity") is not None else math.nan
    out.update(tasks_done=len(record.get("acc_task_il") or []), memory=int(record.get("memory_size", 0)),
               num_params=int(record.get("num_params", 0)), train_time_s=float(record.get("train_time_s", 0.0)),
               **last_task_cost(record.get("timings") or []))
    return out


# A trial prints its epoch lines (loss, images/s) at most once per this many
# seconds: a long task (ResNet-32 on CIFAR-100, 70 epochs) is then not silent
# for hours between its per-task lines, and short epochs do not flood the log.
EPOCH_LINE_SECONDS = float(os.environ.get("CLSEARCH_EPOCH_PROGRESS_S", "60"))


def epoch_logger(label: str, every: float = EPOCH_LINE_SECONDS):
    """The loop's ``log`` for a trial: its epoch lines, throttled to one per
    ``every`` seconds, prefixed with the trial's label; other lines dropped
    (the driver prints each task's line from the trial's report)."""
    last = [time.monotonic()]

    def log(msg: str) -> None:
        now = time.monotonic()
        if " epoch " in msg and now - last[0] >= every:
            last[0] = now
            print(f"[{time.strftime('%H:%M:%S')}] {label}: {msg}", flush=True)

    return log


def node_info() -> dict[str, Any]:
    """Where this process runs: its Ray node id (None outside Ray) and hostname."""
    import ray

    node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    return {"ray_node_id": node_id, "hostname": socket.gethostname()}


def trial_configs(params: dict[str, Any], loop: dict[str, Any], threads: int = 1, device: str = "cpu"):
    """A trial's (strategy overrides, LoopConfig) from its params and the search's loop.

    The params hold strategy knobs and, when the search set or ranged them, loop
    knobs (core/knobs.py): those change this trial's loop config -- batch size,
    augmentation, epochs -- which its result.json then records as "protocol".
    The evaluation split is always validation; threads and device follow Ray."""
    from core.knobs import split_params
    from search.cli import loop_config_from_dict
    from strategies.loop import with_loop_knobs

    strategy_params, loop_params = split_params(params)
    cfg = loop_config_from_dict(loop, eval_split="val", threads=threads, device=device)
    return strategy_params, with_loop_knobs(cfg, loop_params)


def trial_device(requested: str, gpus: float) -> str:
    """The torch device of a trial: the loop's ``requested`` device given the
    ``gpus`` Ray gave the trial.

    ``cpu`` stays on the CPU, ``auto`` follows the GPUs. A CUDA device with no
    GPU from Ray, or on a node whose torch sees no CUDA (a CPU build; a GPU
    declared to Ray that is not there), is a ``ConfigError`` naming the node --
    never a silent CPU run recorded as cuda. Ray sets CUDA_VISIBLE_DEVICES to
    the trial's GPU(s), so the trial's device is plain ``cuda``."""
    from core.config import ConfigError

    if requested == "cpu" or (requested == "auto" and gpus <= 0):
        return "cpu"
    host = socket.gethostname()
    if gpus <= 0:
        raise ConfigError(f"device {requested!r} requested but Ray gave this trial no GPU (on {host}); "
                          "run the search with --gpus-per-trial > 0")
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"device {requested!r} requested and Ray gave this trial {gpus:g} GPU, but CUDA is not "
                          f"available on node {host} (torch {torch.__version__}, CUDA_VISIBLE_DEVICES="
                          f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")
    return "cuda"


def trial_main(config: dict[str, Any], *, method: str, fixed: dict[str, Any], loop: dict[str, Any],
               results_dir: str, stream=None, strategy_modules: list[str] = (),
               min_plasticity_margin: float = DEFAULT_MARGIN,
               fixed_by_method: dict[str, dict[str, Any]] | None = None,
               fidelity_rungs: list[dict[str, Any]] | None = None) -> None:
    """One trial. ``method``/``fixed``: the search's method and fixed knobs; in a
    search across methods the trial's config names its method (``METHOD_KEY``,
    sampled first) and its fixed knobs are ``fixed`` plus ``fixed_by_method``'s
    entry for that method. ``fidelity_rungs``: the cheap rungs of a
    successive-halving search (core/fidelity.py): the trial runs its config at
    each in turn and then at the search's own protocol, reporting when each run
    is done (``rung_done``), for as long as the scheduler
    (search/fidelity_halving.py) promotes it; result.json holds the current
    run and, under ``fidelity``, a summary of each rung passed. A confirmation
    trial runs the protocol only."""
    from ray import tune

    import strategies  # noqa: F401  (registers the strategies in this worker)
    from strategies.checkpoint import STATE_FILE, LoopState, load_state, save_state
    from strategies.loop import make_strategy, run, with_loop_knobs
    from core.files import write_json_atomic
    from core.result import RunResult

    # Tune's "Checkpoint successfully created" line after every task is noise here.
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    context = tune.get_context()
    trial_id = context.get_trial_id() or "local"
    resources = context.get_trial_resources().required_resources if context.get_trial_resources() else {}
    threads = max(1, int(resources.get("CPU", 1)))
    gpus = float(resources.get("GPU", 0))
    # As JSON would give it back (a fixed list knob is a tuple in a fresh search,
    # a list in a resumed one): the finished-record check below compares the two.
    knobs = {k: v for k, v in config.items() if k not in META_KEYS}
    if config.get(METHOD_KEY):
        method = str(config[METHOD_KEY])
        fixed = {**fixed, **((fixed_by_method or {}).get(method) or {})}
    number = config.get(TRIAL_NUMBER_KEY)  # the searcher's (None when Tune runs the function without it)
    confirms = config.get(CONFIRMS_KEY)  # a confirmation trial: the front candidate it reruns
    if config.get(CONFIRM_SEED_KEY) is not None:
        loop = {**loop, "seed": int(config[CONFIRM_SEED_KEY])}
    params = json.loads(json.dumps({**fixed, **knobs}))
    out_file = Path(results_dir) / "trials" / trial_id / "result.json"
    node = node_info()

    restores: list[int] = []  # tasks_done at each restart from a checkpoint
    # When the trial first started (a restarted attempt keeps its first start).
    started_at = record_on_disk(out_file).get("started_at") or time.strftime("%Y-%m-%d %H:%M:%S")
    identity = {"trial_id": trial_id, TRIAL_NUMBER_KEY: number, "started_at": started_at}
    if confirms is not None:
        identity[CONFIRMS_KEY] = int(confirms)
    cheap = [] if confirms is not None else [dict(r) for r in fidelity_rungs or []]
    # Where the trial is on the fidelity ladder: its rung and the rungs it passed.
    ladder: dict[str, Any] = {"rung": 0, "history": []}

    def fidelity_fields(result_or_metrics: dict[str, Any], done: bool) -> dict[str, Any]:
        if not cheap:
            return result_or_metrics
        return {**result_or_metrics, RUNG_KEY: ladder["rung"], TOP_KEY: len(cheap), RUNG_DONE_KEY: done,
                FIDELITY_TEXT_KEY: describe(rung_overrides(cheap, ladder["rung"]))}

    def save(result: RunResult) -> None:
        d = result.to_dict()
        d.update(identity)
        if cheap:
            d[RECORD_KEY] = {"rung": ladder["rung"], "top": len(cheap),
                             "overrides": rung_overrides(cheap, ladder["rung"]), "history": ladder["history"]}
        d["params"] = params
        d["node"] = node
        d["pid"] = os.getpid()
        d["restores"] = restores
        verdict = check_feasibility(d, min_plasticity_margin)  # over the tasks done so far
        d["feasible"] = None if verdict is None else verdict.feasible
        d["infeasible_reason"] = None if verdict is None else verdict.reason
        write_json_atomic(out_file, d)

    def after_task(state: LoopState) -> None:
        save(state.result)
        state.meta["restores"] = restores
        state.meta["rung"], state.meta["history"] = ladder["rung"], ladder["history"]
        with tempfile.TemporaryDirectory(prefix="clsearch-ckpt-") as tmp:
            save_state(state, Path(tmp) / STATE_FILE, stream)
            # Tune copies the folder into the trial's storage before report returns;
            # the report that ends a cheap rung's run is where the scheduler decides.
            tune.report(fidelity_fields(tune_metrics(state.result), state.tasks_done == stream.num_tasks),
                        checkpoint=tune.Checkpoint.from_directory(tmp))

    _raise_if_diverged_before(out_file)  # outside the try: keep the record as it is
    finished = record_on_disk(out_file)
    at_top = not cheap or (finished.get(RECORD_KEY) or {}).get("rung") == len(cheap)
    if finished.get("status") == "completed" and finished.get("params") == params and at_top:
        # Finished before its driver stopped, but Tune's last checkpoint of it
        # predates the end (the driver was stopped between the trial's last
        # write and Tune's bookkeeping). A trial is known finished from its own
        # record: report it again instead of retraining the last task(s) and
        # rewriting a finished result.
        ladder["rung"] = len(cheap)
        tune.report(fidelity_fields(record_metrics(finished), True))
        return
    try:
        from strategies.plugins import load_strategy_modules
        load_strategy_modules(strategy_modules)  # a user's strategy (--strategy-module) registers in this worker too
        # Inside the try: a CUDA device this worker cannot give is recorded as the trial's error.
        device = trial_device(str(loop.get("device", "auto")), gpus)
        strategy_params, cfg = trial_configs(params, loop, threads=threads, device=device)
        resume = _restore(tune.get_checkpoint(), stream, load_state, STATE_FILE)
        if resume is not None and cheap:
            ladder["rung"] = int(resume.meta.get("rung", 0))
            ladder["history"] = list(resume.meta.get("history", []))
        label = f"trial {trial_id}" if number is None else f"trial {number} ({trial_id})"
        while True:
            rung_cfg = with_loop_knobs(cfg, rung_overrides(cheap, ladder["rung"])) if cheap else cfg
            if resume is None:
                strategy = make_strategy(method, strategy_params, stream, rung_cfg)
            else:
                strategy = resume.strategy
                restores.extend(resume.meta.get("restores", []))
                restores.append(resume.tasks_done)
            rung_label = label if not cheap else f"{label} rung {ladder['rung'] + 1}/{len(cheap) + 1}"
            result = run(strategy, stream, rung_cfg, log=epoch_logger(rung_label), resume=resume,
                         checkpoint=after_task)
            if resume is not None and resume.tasks_done == stream.num_tasks:
                # Restarted after its last checkpoint: nothing left to train; report
                # the final metrics again so this attempt ends with them (at a cheap
                # rung: the scheduler decides again). A finished record already on
                # disk is kept as it is (same numbers: the resume is bit-identical),
                # so a resumed search never rewrites a finished trial.
                if not completed_on_disk(out_file):
                    save(result)
                tune.report(fidelity_fields(tune_metrics(result), True))
            if result.status != "completed" or not cheap or ladder["rung"] >= len(cheap):
                break
            # Promoted (the scheduler let the trial go on after its rung_done
            # report): train the config again from scratch at the next rung.
            ladder["history"] = [*ladder["history"], rung_summary(ladder["rung"], cheap, result)]
            ladder["rung"] += 1
            resume = None
    except Exception as exc:
        # Record why the trial failed next to the others, then let Tune see it.
        write_json_atomic(out_file, {
            "format": "clsearch-result/1", **identity, "params": params, "node": node, "method": method,
            "status": "error", "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            "traceback": traceback.format_exc(), "acc_class_il": [], "acc_task_il": [], "eval_sizes": [],
            "metrics": {}, "timings": [], "protocol": {"seed": loop.get("seed")},
            "stream": {"num_tasks": stream.num_tasks if stream else None},
        })
        raise
    if result.status != "completed":
        save(result)
        raise TrialFailed(result.error or result.status)


def _restore(checkpoint, stream, load_state, state_file: str):
    """The LoopState of a Tune checkpoint, or None (no checkpoint: a fresh trial).

    A checkpoint whose folder has gone (Tune keeps one per trial and deletes the
    older one; a driver killed between that and its next experiment snapshot
    can point a restored trial at the deleted one) restarts the trial from
    scratch: slower, same numbers (the run is seeded)."""
    if checkpoint is None:
        return None
    try:
        with checkpoint.as_directory() as folder:
            return load_state(Path(folder) / state_file, stream)
    except FileNotFoundError:
        return None
    except (EOFError, RuntimeError, ValueError, pickle.UnpicklingError):
        # A checkpoint cut short (a full disk while Tune copied it in): the same
        # fallback, from scratch.
        return None


def record_on_disk(out_file: Path) -> dict[str, Any]:
    """The trial's result.json as an earlier attempt left it ({} when there is
    none or it cannot be read)."""
    try:
        record = json.loads(out_file.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def completed_on_disk(out_file: Path) -> bool:
    return record_on_disk(out_file).get("status") == "completed"


def _raise_if_diverged_before(out_file: Path) -> None:
    """A retry of a trial whose earlier attempt diverged fails again at once:
    a NaN/inf loss is deterministic, so training again would only repeat it.
    (Other exceptions are retried from the last checkpoint: an out-of-memory
    error, for one, may not recur.)"""
    previous = record_on_disk(out_file)
    if previous.get("status") == "diverged":
        raise TrialFailed(previous.get("error") or "diverged")

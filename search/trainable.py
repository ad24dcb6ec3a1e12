"""The Ray Tune function trainable: one trial = one run of the shared loop.

DESIGN §5 and §9:
- the stream comes from the driver through Ray's object store
  (``tune.with_parameters``), so no trial re-reads the dataset from disk;
- objectives are measured on the VALIDATION split;
- the trial reports after every task (``tasks_done`` is the time axis an ASHA
  scheduler uses) and its LAST report holds the final metrics, which is what
  Optuna reads for a multi-objective study;
- torch threads = the CPUs Ray gave the trial (two processes with two threads
  each on two cores collapse to a fraction of the throughput, DESIGN §8);
- the trial writes its own ``trials/<id>/result.json`` after every task (atomic),
  so a report can be rebuilt from the folder even if the driver dies;
- the result records where the trial ran (``node``: Ray node id and hostname),
  so a search on a cluster shows how its trials spread over the nodes;
- a diverged (NaN/inf) or crashing trial writes its result with the error and
  then raises, so Tune marks it ERROR, Optuna records it as failed, the search
  goes on, and it never reaches a front.
"""
from __future__ import annotations

import math
import socket
import traceback
from pathlib import Path
from typing import Any

# Metrics reported to Tune after each task (fractions; memory in images).
REPORTED = ("final_acc", "final_acc_pooled", "avg_inc_acc", "forgetting", "bwt", "plasticity")


class TrialFailed(RuntimeError):
    """Raised inside a trial whose training diverged."""


def tune_metrics(result) -> dict[str, Any]:
    """The flat dict a trial reports to Tune for a (partial) RunResult."""
    key = "task_il" if result.task_incremental_only else "class_il"
    m = result.metrics.get(key) or {}
    out = {name: float(m.get(name, math.nan)) for name in REPORTED}
    out.update(tasks_done=result.tasks_done, memory=int(result.memory_size), num_params=int(result.num_params),
               train_time_s=float(result.train_time_s))
    return out


def node_info() -> dict[str, Any]:
    """Where this process runs: its Ray node id (None outside Ray) and hostname."""
    import ray

    node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    return {"ray_node_id": node_id, "hostname": socket.gethostname()}


def trial_main(config: dict[str, Any], *, method: str, fixed: dict[str, Any], proto: dict[str, Any],
               results_dir: str, stream=None) -> None:
    from ray import tune

    import strategies  # noqa: F401  (registers the strategies in this worker)
    from search.common import loop_config
    from strategies.loop import make_strategy, run
    from strategies.result import RunResult, write_json_atomic

    context = tune.get_context()
    trial_id = context.get_trial_id() or "local"
    resources = context.get_trial_resources().required_resources if context.get_trial_resources() else {}
    threads = max(1, int(resources.get("CPU", 1)))
    device = "cuda" if resources.get("GPU", 0) > 0 else "cpu"
    params = {**fixed, **config}
    out_file = Path(results_dir) / "trials" / trial_id / "result.json"
    node = node_info()

    def save(result: RunResult) -> None:
        d = result.to_dict()
        d["trial_id"] = trial_id
        d["params"] = params
        d["node"] = node
        write_json_atomic(out_file, d)

    cfg = loop_config(proto, seed=proto.get("seed", 0), eval_split="val", threads=threads, device=device)

    def after_task(result: RunResult) -> None:
        save(result)
        tune.report(tune_metrics(result))

    try:
        strategy = make_strategy(method, params, stream, cfg)
        result = run(strategy, stream, cfg, callback=after_task, log=None)
    except Exception as exc:
        # Record why the trial failed next to the others, then let Tune see it.
        write_json_atomic(out_file, {
            "format": "clsearch-result/1", "trial_id": trial_id, "params": params, "node": node, "method": method,
            "status": "error", "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            "traceback": traceback.format_exc(), "acc_class_il": [], "acc_task_il": [], "eval_sizes": [],
            "metrics": {}, "timings": [], "protocol": {}, "stream": {"num_tasks": stream.num_tasks if stream else None},
        })
        raise
    if result.status != "completed":
        save(result)
        raise TrialFailed(result.error or result.status)

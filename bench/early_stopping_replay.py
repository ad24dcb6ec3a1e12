"""What would MO-ASHA have stopped? Replay a finished full-fidelity search.

A search run without early stopping knows every trial's whole outcome, so it can
answer, for each early-stopping setting, what the setting saves and what it
loses, without training anything (a retrospective evaluation: the configs stay
those of the full search; a real early-stopped search would also let the sampler
adapt to different results):

- the trials start in the order they started in the full search (file time minus
  the trial's loop time), ``--slots`` at a time; each task takes as long as it
  took there (its timings: begin, train, end of task, evaluation);
- at each rung the real scheduler (``search/mo_asha.py``) decides on the metrics
  the trial had then (the leading k x k block of its accuracy matrix), in the
  order the trials reach the rung in this simulated time;
- printed per setting: trials completed and stopped per rung, training images
  and simulated wall time as a share of the full search's, which of the full
  search's front trials survive, and the hypervolume of the surviving completed
  trials against that of all trials (reference: accuracy 0, forgetting 1).

    python bench/early_stopping_replay.py results/icarl-gtsrb-64 --slots 2
"""
from __future__ import annotations

import argparse
import heapq
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from analysis.pareto import hypervolume, non_dominated  # noqa: E402
from analysis.results import ResultsError, full_fidelity_hypervolume, load_search, objective_column  # noqa: E402
from core.result import task_seconds  # noqa: E402
from search.mo_asha import MultiObjectiveASHA  # noqa: E402


def load_trials(root: Path) -> tuple[object, list[dict]]:
    res = load_search(root)
    trials = []
    for tid in res.trials.loc[res.trials["status"] == "completed", "trial_id"]:
        path = root / "trials" / str(tid) / "result.json"
        d = res.result(tid)
        durations = [task_seconds(t) for t in d["timings"]]
        trials.append({"id": str(tid), "result": d, "durations": durations,
                       "images": [int(t.get("images_trained", 0)) for t in d["timings"]],
                       "start": path.stat().st_mtime - float(d.get("train_time_s") or 0.0)})
    trials.sort(key=lambda t: t["start"])
    return res, trials


def replay(res, trials: list[dict], grace: int, factor: int, slots: int) -> dict:
    """Event-driven replay; returns the tasks each trial got and the makespan."""
    sched = MultiObjectiveASHA(res.objectives, res.num_tasks, grace=grace, eta=factor,
                               task_incremental_only=res.task_incremental_only)
    at_rungs = {t["id"]: sched.rung_metrics(t["result"]) for t in trials}
    tasks_run: dict[str, int] = {}
    queue = list(trials)
    events: list[tuple[float, int, int, int]] = []  # (time, tie-break, trial index, tasks done)
    order = itertools.count()
    index = {t["id"]: i for i, t in enumerate(trials)}
    clock = 0.0

    def start(now: float) -> None:
        t = queue.pop(0)
        heapq.heappush(events, (now + t["durations"][0], next(order), index[t["id"]], 1))

    for _ in range(min(slots, len(queue))):
        start(0.0)
    while events:
        clock, _, i, done = heapq.heappop(events)
        t = trials[i]
        stop = done == res.num_tasks or sched.decide(t["id"], done, at_rungs[t["id"]].get(done, {})) == "STOP"
        if stop:
            tasks_run[t["id"]] = done
            if queue:
                start(clock)
        else:
            heapq.heappush(events, (clock + t["durations"][done], next(order), i, done + 1))
    return {"tasks_run": tasks_run, "makespan": clock}


def full_makespan(trials: list[dict], slots: int) -> float:
    free = [0.0] * slots
    for t in trials:
        k = free.index(min(free))
        free[k] += sum(t["durations"])
    return max(free)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results_dir", help="a search run WITHOUT early stopping")
    p.add_argument("--slots", type=int, required=True, help="trials at a time (CPUs / CPUs per trial)")
    p.add_argument("--grace", type=int, nargs="+", default=[1, 2], help="grace tasks to try")
    p.add_argument("--factor", type=int, nargs="+", default=[2, 3], help="reduction factors to try")
    args = p.parse_args(argv)
    root = Path(args.results_dir)
    try:
        res, trials = load_trials(root)
        senses, reference = full_fidelity_hypervolume(res)
    except (ResultsError, OSError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    objectives = res.objectives
    cols = [objective_column(n, res.task_incremental_only) for n, _ in objectives]
    table = res.trials.set_index("trial_id").loc[[t["id"] for t in trials], cols].to_numpy(float)
    on_front = non_dominated(table, senses)
    front_ids = [t["id"] for t, f in zip(trials, on_front) if f]
    hv_all = hypervolume(table, senses, reference)
    images_all = sum(sum(t["images"]) for t in trials)
    wall_all = full_makespan(trials, args.slots)
    print(f"# {root.name}: {len(trials)} completed trials, {res.num_tasks} tasks, {args.slots} slots; "
          f"front {', '.join(front_ids)}; hypervolume {hv_all:.4f}")
    print("| grace | factor | completed | stopped after k tasks | training images | wall time | front trials kept "
          "| hypervolume kept |")
    print("|---|---|---|---|---|---|---|---|")
    for grace, factor in itertools.product(args.grace, args.factor):
        if grace >= res.num_tasks or factor < 2 or grace < 1:
            continue
        out = replay(res, trials, grace, factor, args.slots)
        ran = out["tasks_run"]
        done = [i for i, t in enumerate(trials) if ran[t["id"]] == res.num_tasks]
        stopped = {}
        for t in trials:
            if ran[t["id"]] < res.num_tasks:
                stopped[ran[t["id"]]] = stopped.get(ran[t["id"]], 0) + 1
        images = sum(sum(t["images"][: ran[t["id"]]]) for t in trials)
        hv = hypervolume(table[done], senses, reference) if done else 0.0
        kept = [f for f in front_ids if ran[f] == res.num_tasks]
        print(f"| {grace} | {factor} | {len(done)} | "
              + (", ".join(f"{k}: {n}" for k, n in sorted(stopped.items())) or "none") + " | "
              f"{100 * images / images_all:.0f} % | {100 * out['makespan'] / wall_all:.0f} % | "
              f"{len(kept)} of {len(front_ids)} | {100 * hv / hv_all:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

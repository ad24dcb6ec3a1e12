"""Hand-made search results folders for tests (no training, no Ray).

``write_search_fixture(root)`` writes what ``search/run.py`` writes before the
report: ``search.json`` and ``trials/<id>/result.json`` for each trial, with
hand-made 3-task accuracy matrices whose metrics are known by hand:

=====  =========  =====================  ===========  ============  ===============
trial  status     lr / memory            final acc    forgetting    on the front?
=====  =========  =====================  ===========  ============  ===============
0      completed  0.1 / 200              60 %         10 %          yes
1      completed  2.0 / 2000             70 %         20 %          yes
2      completed  0.05 / 50              50 %          5 %          yes
3      completed  0.3 / 100              55 %         15 %          no (by 0)
4      completed  1.0 / 500              65 %         25 %          no (by 1)
5      diverged   3.5 / 1000             94.5 % *     1 % *         never (would dominate all)
6      running    0.2 / 300, 2 of 3 tasks 89 % *      2 % *         never: truncated
7      completed  0.02 / 60              40 %          0 %          yes
8      error      0.5 / 150              -            -             never
=====  =========  =====================  ===========  ============  ===============

(* metrics of the tasks done.) The Pareto front (max final acc, min forgetting,
completed trials only) is trials 1, 0, 2, 7 (``EXPECTED_FRONT``). The
task-IL matrix of each trial is the class-IL one plus 0.1 (capped at 1), so
the task-IL front is the same trials.

``task_incremental_only=True`` writes a PackNet-style folder: the same numbers
on the task-IL matrices, class-IL matrices all null, class-IL metrics null.

The did-not-learn rule (core/feasibility.py) is OFF in these folders unless a
test asks for it (``min_plasticity_margin``): the hand-made numbers were chosen
for the front, not for chance levels -- trial 7's task-IL diagonal (40, 40,
70 %) is below the 60 % floor of 2-class tasks, as are trial 2's and trial 7's
PackNet-style diagonals. ``min_plasticity_margin=None`` writes no key, as a
folder from before the rule (the default margin then applies on read).

``COLLAPSED`` (trial 9, not in ``TRIALS``) is a trial that did not learn: 45 %
everywhere in class-IL, so 55 % on the task-IL diagonal against a 50 % chance
(below the 60 % floor of margin 0.1), 45 % final accuracy and 0 % forgetting.
With the rule off it dominates trial 7 (same forgetting, more accuracy) and
takes its place on the front; with the rule on, it and trial 7 are infeasible.

The protocol in search.json is the synthetic dataset's (3 tasks), as
``search/run.py`` writes it (``stream_protocol`` and ``loop``), so a rerun test
can reuse it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from core.metrics import summarize

from core.result import RESULT_FORMAT, SEARCH_FORMAT  # noqa: E402
NUM_TASKS = 3
EVAL_SIZES = [100, 60, 40]
TASK_CLASSES = [[0, 1], [2, 3], [4, 5]]


def _R(a: float, b: float, c: float, d: float, e: float, f: float) -> list[list[float | None]]:
    """[[a, -, -], [b, c, -], [d, e, f]]: forgetting = ((max(a, b) - d) + (c - e)) / 2."""
    return [[a, None, None], [b, c, None], [d, e, f]]


# One dict per trial: n (trial number), raw result status, params, class-IL matrix
# (rows done so far, padded to 3 columns as the loop writes them), error, and the
# hand-computed final accuracy / forgetting of the class-IL matrix.
TRIALS: list[dict[str, Any]] = [
    {"n": 0, "status": "completed", "params": {"lr": 0.1, "memory": 200, "selection": "herding"},
     "R": _R(.60, .55, .60, .50, .50, .80), "final": .60, "forgetting": .10},
    {"n": 1, "status": "completed", "params": {"lr": 2.0, "memory": 2000, "selection": "herding"},
     "R": _R(.80, .70, .80, .60, .60, .90), "final": .70, "forgetting": .20},
    {"n": 2, "status": "completed", "params": {"lr": 0.05, "memory": 50, "selection": "random"},
     "R": _R(.45, .42, .45, .40, .40, .70), "final": .50, "forgetting": .05},
    {"n": 3, "status": "completed", "params": {"lr": 0.3, "memory": 100, "selection": "random"},
     "R": _R(.60, .50, .60, .45, .45, .75), "final": .55, "forgetting": .15},
    {"n": 4, "status": "completed", "params": {"lr": 1.0, "memory": 500, "selection": "herding"},
     "R": _R(.80, .70, .80, .55, .55, .85), "final": .65, "forgetting": .25},
    {"n": 5, "status": "diverged", "params": {"lr": 3.5, "memory": 1000, "selection": "herding"},
     "R": [[.95, None, None], [.94, .95, None]], "final": .945, "forgetting": .01,
     "error": "loss became nan in task 2 epoch 0"},
    {"n": 6, "status": "running", "params": {"lr": 0.2, "memory": 300, "selection": "random"},
     "R": [[.90, None, None], [.88, .90, None]], "final": .89, "forgetting": .02},
    {"n": 7, "status": "completed", "params": {"lr": 0.02, "memory": 60, "selection": "random"},
     "R": _R(.30, .30, .30, .30, .30, .60), "final": .40, "forgetting": .0},
    {"n": 8, "status": "error", "params": {"lr": 0.5, "memory": 150, "selection": "herding"},
     "R": [], "final": None, "forgetting": None, "error": "RuntimeError: CUDA out of memory"},
]
# A model that collapsed: nothing learned, so nothing to forget (fixture docstring).
COLLAPSED: dict[str, Any] = {"n": 9, "status": "completed", "params": {"lr": 3.9, "memory": 80, "selection": "random"},
                             "R": _R(.45, .45, .45, .45, .45, .45), "final": .45, "forgetting": .0}
EXPECTED_FRONT_NUMBERS = [1, 0, 2, 7]           # best final accuracy first
EXPECTED_STATUS = {0: "completed", 1: "completed", 2: "completed", 3: "completed", 4: "completed",
                   5: "diverged", 6: "truncated", 7: "completed", 8: "error"}

SPACE = {"lr": {"type": "float", "low": 0.01, "high": 4.0, "log": True},
         "memory": {"type": "int", "low": 50, "high": 2000, "log": True},
         "selection": {"type": "categorical", "choices": ["random", "herding"]}}
PACKNET_SPACE = {"lr": {"type": "float", "low": 0.01, "high": 4.0, "log": True},
                 "prune_ratio": {"type": "float", "low": 0.3, "high": 0.9, "log": False}}
FIXED = {"weight_decay": 1e-5}


def trial_at(n: int, final: float, forgetting: float, params: dict[str, Any] | None = None,
             status: str = "completed") -> dict[str, Any]:
    """A fixture trial whose class-IL matrix has the given final accuracy and
    forgetting (fractions): ``_R(g, g, g, g - F, g - F, f)`` with ``f`` set so
    that the last row's mean is ``final``; for crowded and coincident plots."""
    lo, hi = max(forgetting, (3 * final + 2 * forgetting - 1) / 2), min(1.0, (3 * final + 2 * forgetting) / 2)
    if lo > hi:
        raise ValueError(f"no 3-task matrix has final {final} and forgetting {forgetting}")
    g = round((lo + hi) / 2, 6)
    f = round(3 * final - 2 * (g - forgetting), 6)
    return {"n": n, "status": status, "params": params or {"lr": 0.1, "memory": 200, "selection": "random"},
            "R": _R(g, g, g, round(g - forgetting, 6), round(g - forgetting, 6), f), "final": final,
            "forgetting": forgetting}


def trial_id(n: int, prefix: str = "a1b2c") -> str:
    """Ray Tune style trial id: ``<experiment hash>_<5-digit number>``."""
    return f"{prefix}_{n:05d}"


def expected_front(prefix: str = "a1b2c") -> list[str]:
    return [trial_id(n, prefix) for n in EXPECTED_FRONT_NUMBERS]


def task_il_matrix(R: list[list[float | None]]) -> list[list[float | None]]:
    return [[None if v is None else round(min(1.0, v + 0.1), 6) for v in row] for row in R]


def stream_protocol(tasks: int = NUM_TASKS) -> dict[str, Any]:
    """The search.json ``stream_protocol`` of the fixture (core.protocol.StreamProtocol fields)."""
    return {"dataset": "synthetic", "classes": None, "tasks": tasks, "task_sizes": None, "class_order": "natural",
            "stream_seed": 0, "val_fraction": 0.1, "folders": None, "image_size": 64, "data_dir": None,
            "download": False}


def loop(seed: int = 0) -> dict[str, Any]:
    """The search.json ``loop`` of the fixture (strategies.loop.LoopConfig fields that differ from the defaults)."""
    return {"backbone": "simplecnn", "epochs": 1, "augment": "none", "batch_size": 32, "precision": "fp32",
            "device": "cpu", "threads": 1, "seed": seed, "eval_split": "val"}


def _square(R: list[list[float | None]]) -> list[list[float | None]]:
    k = len(R)
    return [row[:k] for row in R]


def make_result(spec: dict[str, Any], t: dict[str, Any], tid: str, task_incremental_only: bool) -> dict[str, Any]:
    """A result.json dict for one fixture trial (the layout strategies/loop.py writes)."""
    params = {**spec["fixed"], **t["params"]}
    if t["status"] == "error":  # what search/trainable.py records for a trial that raised
        return {"format": RESULT_FORMAT, "trial_id": tid, "params": params, "method": spec["method"],
                "status": "error", "error": t.get("error"), "traceback": "Traceback (most recent call last): ...",
                "acc_class_il": [], "acc_task_il": [], "eval_sizes": [], "metrics": {}, "timings": [],
                "protocol": {}, "stream": {"num_tasks": NUM_TASKS}}
    k = len(t["R"])
    sizes = EVAL_SIZES[:k]
    if task_incremental_only:
        task_R = t["R"]                          # the hand-made numbers are the task-IL ones
        class_R = [[None] * NUM_TASKS for _ in range(k)]
    else:
        class_R = t["R"]
        task_R = task_il_matrix(t["R"])
    metrics: dict[str, Any] = {}
    if k:
        metrics = {"class_il": None if task_incremental_only else summarize(_square(class_R), sizes),
                   "task_il": summarize(_square(task_R), sizes)}
    memory = params.get("memory", 0)
    return {
        "format": RESULT_FORMAT,
        "method": spec["method"],
        "config": params,
        "protocol": {"epochs": 1, "batch_size": 32, "backbone": "simplecnn", "seed": 0, "eval_split": "val",
                     "precision": "fp32"},
        "stream": {"name": "synthetic", "num_tasks": NUM_TASKS, "num_classes": 6, "task_classes": TASK_CLASSES,
                   "class_order": list(range(6)), "val_sizes": EVAL_SIZES},
        "task_incremental_only": task_incremental_only,
        "eval_split": "val",
        "acc_class_il": class_R,
        "acc_task_il": task_R,
        "eval_sizes": sizes,
        "metrics": metrics,
        "timings": [{"task": i, "train_s": 1.0, "eval_s": 0.1, "images_trained": 500} for i in range(k)],
        "train_time_s": 10.0 * k + t["n"],
        "memory_size": memory,
        "num_params": 12345,
        "extra": {},
        "status": t["status"],
        "error": t.get("error"),
        "environment": {"python": "3.x", "torch": "test"},
        "trial_id": tid,
        "params": params,
    }


def write_search_fixture(root: str | Path, *, method: str = "icarl", task_incremental_only: bool = False,
                         objectives: Sequence[Sequence[str]] = (("final_acc", "max"), ("forgetting", "min")),
                         prefix: str = "a1b2c", trials: Sequence[dict[str, Any]] | None = None,
                         space: dict[str, Any] | None = None,
                         min_plasticity_margin: float | None = 0.0) -> Path:
    """Write search.json + trials/<id>/result.json under ``root``; return ``root``.

    ``task_incremental_only=True`` (PackNet style) uses ``PACKNET_SPACE`` and maps
    each fixture trial's params to lr / prune_ratio. trials.csv is NOT written:
    call ``analysis.results.write_trials_csv(root)`` as the search driver does.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    trials = list(TRIALS if trials is None else trials)
    if space is None:
        space = PACKNET_SPACE if task_incremental_only else SPACE
    spec = {
        "format": SEARCH_FORMAT, "method": method, "task_incremental_only": task_incremental_only,
        "objectives": [list(o) for o in objectives], "asha": False, "space": space,
        "fixed": {} if task_incremental_only else dict(FIXED), "stream_protocol": stream_protocol(), "loop": loop(),
        "trials": len(trials),
        "created": "2025-01-01 00:00:00", "environment": {"python": "3.x"},
    }
    if min_plasticity_margin is not None:
        spec["min_plasticity_margin"] = min_plasticity_margin
    (root / "search.json").write_text(json.dumps(spec, indent=1))
    for t in trials:
        if task_incremental_only and "prune_ratio" not in t["params"]:
            t = {**t, "params": {"lr": t["params"]["lr"], "prune_ratio": round(0.3 + 0.07 * t["n"], 2)}}
        tid = trial_id(t["n"], prefix)
        d = make_result(spec, t, tid, task_incremental_only)
        out = root / "trials" / tid / "result.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(d, indent=1))
    return root



def make_cross_method(root: str | Path, finetune_trials: Sequence[int],
                      fixed_by_method: dict[str, dict[str, Any]] | None = None) -> Path:
    """Turn a fixture search under ``root`` into a search across icarl and finetune:
    the trials numbered ``finetune_trials`` become finetune's, with finetune's keys
    only (lr, no memory), as a cross-method search writes them. trials.csv is NOT
    rewritten: call ``analysis.results.write_trials_csv(root)`` afterwards."""
    root = Path(root)
    spec = json.loads((root / "search.json").read_text())
    spec.update(method="icarl,finetune", methods=["icarl", "finetune"], space={}, fixed={},
                spaces={"icarl": SPACE, "finetune": {"lr": SPACE["lr"]}})
    if fixed_by_method is not None:
        spec["fixed_by_method"] = fixed_by_method
    (root / "search.json").write_text(json.dumps(spec))
    for n in finetune_trials:
        f = root / "trials" / trial_id(n) / "result.json"
        d = json.loads(f.read_text())
        lr = d["params"]["lr"]
        d.update(method="finetune", params={"lr": lr}, config={"lr": lr}, memory_size=0)
        f.write_text(json.dumps(d))
    return root

# The rerun's baselines in ``write_rerun_fixture``: (final accuracy, forgetting) of seed 0;
# seed s adds 0.01 * s to both, so the means over seeds 0 and 1 add 0.005.
RERUN_BASELINES = {"finetune": (.30, .60), "joint": (.85, .02)}


def write_rerun_fixture(root: str | Path, method: str = "icarl", picked: Sequence[int] = (1,),
                        seeds: Sequence[int] = (0, 1), baselines: Sequence[str] = ("finetune", "joint"),
                        prefix: str = "a1b2c") -> Path:
    """What ``search/rerun.py ROOT --pick ...`` leaves in a search folder, without
    training: ``rerun/<config>/seed<N>/result.json`` (test split) for each picked
    fixture trial (2 points below its validation accuracy) and each baseline
    (``RERUN_BASELINES``), and ``final_table.md/.csv`` written by the same
    functions rerun.py calls. Returns the path of final_table.md."""
    from analysis.final_table import build_final_table, write_final_table

    root = Path(root)
    runs: dict[str, list[Path]] = {}
    configs = [(f"{method} #{n} ({trial_id(n, prefix)})", f"{method}-{trial_id(n, prefix)}", method,
                next(t for t in TRIALS if t["n"] == n)) for n in picked]
    configs += [(b, b, b, {"n": 0, "params": {}, "final": RERUN_BASELINES[b][0], "forgetting": RERUN_BASELINES[b][1]})
                for b in baselines]
    for label, folder, m, t in configs:
        paths = []
        for seed in seeds:
            final = t["final"] - (0.02 if m == method else 0.0) + 0.01 * seed
            run = trial_at(t["n"], round(final, 6), round(t["forgetting"] + 0.01 * seed, 6), dict(t["params"]))
            d = make_result({"method": m, "fixed": {}}, run, "", task_incremental_only=False)
            for key in ("trial_id", "params"):
                d.pop(key)
            d["eval_split"] = d["protocol"]["eval_split"] = "test"
            d["protocol"]["seed"] = seed
            path = root / "rerun" / folder / f"seed{seed}" / "result.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(d, indent=1))
            paths.append(path)
        runs[label] = paths
    notes = [f"search: {root}", "protocol: synthetic, 3 tasks, 6 classes, 1 epochs/task, simplecnn; trained on "
             "train+validation, evaluated on test", f"seeds: {list(seeds)}",
             "finetune and joint use their default configs under the same protocol"]
    _, md = write_final_table(build_final_table(runs), root, f"Final table: {method}", notes)
    return md

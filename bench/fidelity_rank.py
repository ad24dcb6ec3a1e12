"""Does a cheap fidelity that runs the WHOLE task sequence rank configs as full fidelity does?

MO-ASHA (search/mo_asha.py) judges a trial after its first task(s), where
forgetting barely exists yet, and so loses the stable end of the front. A
fidelity that keeps every task but trains each one for fewer epochs still sees
forgetting. Before building a scheduler on it, this script measures it on a
finished full-fidelity search (the "measure first" of successive halving's
design: Li et al., "Hyperband", JMLR 2018, §3 -- a cheap budget is only useful
if it ranks configurations as the full budget does):

1. every completed search trial (confirmation reruns aside) is trained again
   at each cheap fidelity -- ``--epochs`` per task, or ``--train-fraction`` of
   each class's training images at the search's epochs (datasets/stream.py
   ``fidelity_subset``), either optionally scored on ``--eval-fraction`` of the
   validation images -- same config, same seed, same stream, on the
   VALIDATION split (``--epochs`` equal to the search's own is a reproduction
   check: the same numbers, tau +1); one Ray task per run, the one thread
   rule; finished runs are kept, so an interrupted call resumes; under
   ``<search>/fidelity/<fidelity>/<method>-<trial id>/seed<S>/result.json``
   (``epochs1``, ``train0.25``, ``epochs2-eval0.5``, ...);
2. per cheap fidelity and objective, Kendall's tau-b between the cheap values
   and the search's full-fidelity values (Kendall 1945: ties counted as in
   scipy's ``kendalltau``; tau-b = (C - D) / sqrt((n0 - n1)(n0 - n2)));
3. an offline replay of successive halving with promotion by rerunning: all
   n configs at the cheap fidelity, ceil(n / eta) of them promoted by each
   ``--promote`` rule of the live scheduler (search/fidelity_halving.py
   ``promoted``: split, first, pareto; did-not-learn trials last) and trained
   at full fidelity (their values are the search's); synchronously (all n
   ranked at once) and asynchronously (as ``search/run.py --fidelity``
   decides: each config when its cheap run ends, in trial-number order,
   against those done before it). Printed per (fidelity, eta, rule, mode): the
   full search's front points kept (exactly, or by a promoted point within
   ``--within`` on both objectives), the hypervolume of the promoted points
   against all (reference: accuracy 0, forgetting 1), and the compute as a
   share of the full search's: (cheap seconds of all + full seconds of the
   promoted) / full seconds of all, seconds being each run's recorded
   begin + train + end-of-task + evaluation time.

    python bench/fidelity_rank.py results/icarl-gtsrb-64 --epochs 1 2 --eta 2 3 4
    python bench/fidelity_rank.py results/icarl-gtsrb-64 --train-fraction 0.2 --eval-fraction 0.25

The configs are those the full search's sampler chose; a real multi-fidelity
search would let the sampler adapt to the cheap results too.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from analysis.pareto import hypervolume, non_dominated  # noqa: E402
from analysis.results import (ResultsError, full_fidelity_hypervolume, load_search, objective_column,  # noqa: E402
                              read_result)
from core.result import CONFIRMS_KEY, TRIAL_NUMBER_KEY, metrics_key, task_seconds  # noqa: E402
from search.fidelity_halving import promoted  # noqa: E402
from core.fidelity import PROMOTION_RULES  # noqa: E402


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two equally long sequences; NaN pairs are dropped.
    NaN when fewer than two pairs remain or one side is constant."""
    pairs = [(float(a), float(b)) for a, b in zip(x, y) if not (math.isnan(float(a)) or math.isnan(float(b)))]
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(pairs)):
        for j in range(i + 1, len(pairs)):
            dx = pairs[i][0] - pairs[j][0]
            dy = pairs[i][1] - pairs[j][1]
            if dx == 0 and dy == 0:
                ties_x += 1
                ties_y += 1
            elif dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    n0 = len(pairs) * (len(pairs) - 1) // 2
    denominator = math.sqrt((n0 - ties_x) * (n0 - ties_y))
    return (concordant - discordant) / denominator if denominator > 0 else math.nan


def run_seconds(record: dict[str, Any]) -> float:
    """A run's measured compute: every task's begin + train + end + evaluation seconds."""
    return sum(task_seconds(t) for t in record.get("timings") or [])


def objective_values(record: dict[str, Any], objectives: list[tuple[str, str]]) -> tuple[float, ...]:
    m = (record.get("metrics") or {}).get(metrics_key(bool(record.get("task_incremental_only")))) or {}
    return tuple(float(m[n]) if m.get(n) is not None else math.nan for n, _ in objectives)


def promoted_ids(ids: list[str], cheap: dict[str, tuple[float, ...]], senses: list[str], eta: int, rule: str,
                 infeasible: dict[str, float], asynchronous: bool) -> set[str]:
    """The configs a cheap rung promotes, by ``rule`` (search/fidelity_halving.py
    ``promoted``): synchronously (all ranked at once) or as the live scheduler
    decides, each config when its cheap run is done, against the configs done
    before it (``ids`` in that order)."""
    if not asynchronous:
        return promoted({i: cheap[i] for i in ids}, senses, eta, rule, infeasible)
    seen: dict[str, tuple[float, ...]] = {}
    out = set()
    for i in ids:
        seen[i] = cheap[i]
        if i in promoted(seen, senses, eta, rule, {k: v for k, v in infeasible.items() if k in seen}):
            out.add(i)
    return out


def replay(full: dict[str, tuple[float, ...]], cheap: dict[str, tuple[float, ...]], senses: list[str],
           reference: list[float], eta: int, infeasible: dict[str, float], within: float,
           full_s: dict[str, float], cheap_s: dict[str, float], rule: str = "pareto",
           asynchronous: bool = False) -> dict[str, Any]:
    """One (fidelity, eta, rule, mode) of the offline replay (module docstring, 3);
    ``full``'s order is the order the configs' cheap runs end in."""
    ids = list(full)
    promoted = promoted_ids(ids, cheap, senses, eta, rule, infeasible, asynchronous)
    compute = (sum(cheap_s[i] for i in ids) + sum(full_s[i] for i in promoted)) / sum(full_s[i] for i in ids)
    return {"promoted": promoted, **front_kept(full, promoted, senses, reference, within), "compute_share": compute}


def front_kept(full: dict[str, tuple[float, ...]], promoted: set[str], senses: list[str], reference: list[float],
               within: float) -> dict[str, Any]:
    """The front of ``full`` (id -> full-fidelity values) against the ``promoted``
    ids: ``front``, ``kept`` (front points promoted), ``near`` (front points
    not promoted but within ``within`` of a promoted point on every objective)
    and ``hypervolume_share`` (of the promoted points, against all)."""
    ids = list(full)
    points = np.array([full[i] for i in ids], dtype=float)
    front_ids = [i for i, on in zip(ids, non_dominated(points, senses)) if on]
    kept_points = np.array([full[i] for i in ids if i in promoted], dtype=float).reshape(-1, len(senses))
    kept, near = [], []
    for f in front_ids:
        if f in promoted:
            kept.append(f)
        elif len(kept_points) and np.any(np.all(np.abs(kept_points - np.array(full[f])) <= within, axis=1)):
            near.append(f)
    hv_all = hypervolume(points, senses, reference)
    hv_kept = hypervolume(kept_points, senses, reference) if len(kept_points) else 0.0
    return {"front": front_ids, "kept": kept, "near": near,
            "hypervolume_share": hv_kept / hv_all if hv_all > 0 else math.nan}


def cheap_runs(root: Path, res, rows, name: str, fidelity: dict[str, Any], cpus: float) -> dict[str, dict[str, Any]]:
    """Train (or keep) every row's config at the ``fidelity`` (loop knobs: epochs,
    train_fraction, eval_fraction) on validation, under fidelity/<name>/;
    {trial id: finished record}."""
    import strategies  # noqa: F401  (registers the strategies)
    from core.knobs import split_params
    from core.protocol import StreamProtocol
    from datasets.protocol import load_stream
    from search.cli import loop_config_from_dict
    from search.rerun import build_parser, output_folder, row_method, train_configs, trial_params
    from strategies.loop import with_loop_knobs
    from strategies.plugins import load_cli_modules

    spec = res.spec
    stream = load_stream(StreamProtocol.from_dict(spec["stream_protocol"], owner=f"{root}/search.json"))
    loop = loop_config_from_dict(spec["loop"], eval_split="val")
    out = root / "fidelity" / name
    plan, paths = [], {}
    for _, row in rows.iterrows():
        method = row_method(row, res.methods)
        params, knobs = split_params(trial_params(row))
        run_dir = out / f"{method}-{row['trial_id']}"
        plan.append((f"{method} {row['trial_id']} at {name}", method, params,
                     with_loop_knobs(loop, {**knobs, **fidelity}), run_dir))
        paths[str(row["trial_id"])] = run_dir / f"seed{loop.seed}" / "result.json"
    args = build_parser().parse_args(["--cpus-per-run", f"{cpus:g}", "--quiet"])
    args.strategy_modules = load_cli_modules(None, root)  # the search's own (--strategy-module), if any
    with output_folder(out):
        records, failures = train_configs(args, plan, [loop.seed], stream)
    for run, reason in failures:
        print(f"warning: {run.name} failed ({reason}); left out", file=sys.stderr)
    return {tid: records[p] for tid, p in paths.items() if p in records}


def cheap_fidelities(args, full_epochs: int) -> list[tuple[str, dict[str, Any]]] | str:
    """(name, loop knobs) of every cheap fidelity asked for, or the one-line
    reason the request is wrong. Names are the folders under fidelity/:
    ``epochs1``, ``train0.25``, with ``-eval0.5`` when scored on a share."""
    epochs = args.epochs if args.epochs is not None else ([] if args.train_fraction else [1, 2])
    evaluation = {} if args.eval_fraction >= 1.0 else {"eval_fraction": args.eval_fraction}
    suffix = f"-eval{args.eval_fraction:g}" if evaluation else ""
    if not 0.0 < args.eval_fraction <= 1.0:
        return f"--eval-fraction {args.eval_fraction:g} is not a share in (0, 1]"
    out = []
    for e in epochs:
        if not 1 <= e <= full_epochs:
            return f"--epochs {e} is not a fidelity between 1 and the search's {full_epochs} epochs per task"
        out.append((f"epochs{e}{suffix}", {"epochs": e, **evaluation}))
    for f in args.train_fraction:
        if not 0.0 < f <= 1.0:
            return f"--train-fraction {f:g} is not a share in (0, 1]"
        out.append((f"train{f:g}{suffix}", {"train_fraction": f, **evaluation}))
    return out


def main(argv: list[str] | None = None) -> int:
    from core.feasibility import check_result

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results_dir", help="a finished search run at full fidelity, without early stopping")
    p.add_argument("--epochs", type=int, nargs="+", default=None,
                   help="cheap epochs per task to measure (default 1 2 unless --train-fraction is given)")
    p.add_argument("--train-fraction", type=float, nargs="+", default=[],
                   help="cheap shares of each class's training images to measure, at the search's epochs")
    p.add_argument("--eval-fraction", type=float, default=1.0,
                   help="share of each class's validation images every cheap run is scored on (default 1)")
    p.add_argument("--eta", type=int, nargs="+", default=[2, 3, 4], help="reduction factors to replay")
    p.add_argument("--within", type=float, default=0.01, help="a front point counts as kept when a promoted "
                   "point is within this on every objective (fractions; default 1 point)")
    p.add_argument("--promote", nargs="+", default=list(PROMOTION_RULES), choices=PROMOTION_RULES,
                   help="promotion rules to replay (search/fidelity_halving.py; default all)")
    p.add_argument("--cpus-per-run", type=float, default=1.0)
    args = p.parse_args(argv)
    root = Path(args.results_dir)
    try:
        res = load_search(root)
        senses, reference = full_fidelity_hypervolume(res)
    except (ResultsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    objectives = res.objectives
    trials = res.trials
    rows = trials[trials["status"] == "completed"]
    if CONFIRMS_KEY in rows:  # a confirmation reruns a search trial's config with another seed
        rows = rows[rows[CONFIRMS_KEY].isna()]
    full_epochs = int(res.spec["loop"]["epochs"])
    margin = float(res.spec.get("min_plasticity_margin") or 0.0)
    columns = [objective_column(n, res.task_incremental_only) for n, _ in objectives]
    # In trial-number order: the order a search's cheap runs would end in with one at a time.
    rows = rows.sort_values(TRIAL_NUMBER_KEY, kind="stable")
    full = {str(r["trial_id"]): tuple(float(r[c]) for c in columns) for _, r in rows.iterrows()}
    from search.rerun import row_method

    method_of = {str(r["trial_id"]): row_method(r, res.methods) for _, r in rows.iterrows()}
    full_s = {t: run_seconds(read_result(root / "trials" / t / "result.json")) for t in full}
    print(f"# {root.name}: {len(full)} completed search trials, {res.num_tasks} tasks, {full_epochs} "
          f"epochs/task at full fidelity; objectives {', '.join(n for n, _ in objectives)} (validation)")
    fidelities = cheap_fidelities(args, full_epochs)
    if isinstance(fidelities, str):
        print(f"error: {fidelities}", file=sys.stderr)
        return 2
    rank_rows, replay_rows = [], []
    for name, fidelity in fidelities:
        records = cheap_runs(root, res, rows, name, fidelity, args.cpus_per_run)
        ids = [t for t in full if t in records]
        cheap = {t: objective_values(records[t], objectives) for t in ids}
        cheap_s = {t: run_seconds(records[t]) for t in ids}
        infeasible = {}
        for t in ids:
            verdict = check_result(records[t], margin) if margin > 0 else None
            if verdict is not None and not verdict.feasible:
                infeasible[t] = verdict.constraint
        # All configs, then (a search across methods) each method's own: a single-method
        # search ranks configs of one method, which the pooled tau can flatter.
        groups = [(str(len(ids)), ids)]
        if res.cross_method:
            groups += [(f"{m}: {len(g)}", g) for m in res.methods
                       if len(g := [t for t in ids if method_of[t] == m]) >= 3]
        for group_name, group in groups:
            taus = [kendall_tau_b([cheap[t][k] for t in group], [full[t][k] for t in group])
                    for k in range(len(senses))]
            share = sum(cheap_s[t] for t in group) / sum(full_s[t] for t in group)
            rank_rows.append(f"| {name} | {group_name} | " + " | ".join(f"{tau:+.2f}" for tau in taus)
                             + f" | {100 * share:.0f} % | {sum(t in infeasible for t in group)} |")
        for eta in args.eta:
            for rule in args.promote:
                for asynchronous in (False, True):
                    r = replay({t: full[t] for t in ids}, cheap, senses, reference, eta, infeasible, args.within,
                               full_s, cheap_s, rule=rule, asynchronous=asynchronous)
                    replay_rows.append(
                        f"| {name} | {eta} | {rule} | {'async' if asynchronous else 'sync'} | "
                        f"{len(r['promoted'])} of {len(ids)} | "
                        f"{len(r['kept'])} (+{len(r['near'])} within {100 * args.within:g} pt) of "
                        f"{len(r['front'])} | {100 * r['hypervolume_share']:.1f} % | "
                        f"{100 * r['compute_share']:.0f} % |")
    print("\n## Rank agreement with full fidelity (Kendall tau-b)\n")
    print("| fidelity | configs | " + " | ".join(f"tau {n}" for n, _ in objectives)
          + " | compute of one cheap pass | did not learn (cheap) |")
    print("|---|---|" + "---|" * len(objectives) + "---|---|")
    print("\n".join(rank_rows))
    print("\n## Successive halving replayed: cheap pass over all, top 1/eta rerun at full fidelity\n")
    print("| fidelity | eta | rule | mode | promoted | full front points kept | hypervolume kept | compute |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(replay_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What did a successive-halving search (``search/run.py --fidelity``) lose?

Successive halving (Jamieson & Talwalkar, AISTATS 2016; asynchronous as in
ASHA, Li et al., MLSys 2020) stops configurations after a cheap run of the
whole task sequence; whether the stopped ones would have been on the front at
the protocol's fidelity is only known by training them there. This script
does that, after the search, on the validation split, and compares:

1. every trial the search stopped at a cheap rung is trained at the
   protocol's fidelity (same config, seed and stream; one Ray task per run,
   the one-thread rule; finished runs kept, so an interrupted call resumes),
   under ``<search>/fidelity/full/<method>-<trial id>/seed<S>/result.json``;
   the promoted trials' own top-rung runs are their full-fidelity values
   (tests/test_fidelity_halving.py checks they equal a direct run's);
2. Kendall's tau-b between each objective at the first cheap rung and at full
   fidelity, over every trial;
3. the front of all trials at full fidelity against the promoted ones: its
   points kept (exactly, or by a promoted point within ``--within`` on every
   objective), the hypervolume of the promoted points as a share of all
   (reference: each objective's worst value), and the compute: every run the
   search made (its cheap runs and the promoted trials' top-rung runs) as a
   share of every trial at full fidelity, in recorded task seconds (begin,
   training, end of task, evaluation).

    python bench/fidelity_audit.py results/icarl-gtsrb-fid16

The audit runs are the expensive part: one full run per stopped trial.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.results import ResultsError, fidelity_ladder, load_search  # noqa: E402
from core.metrics import WORST_VALUE  # noqa: E402
from core.result import TRIAL_NUMBER_KEY  # noqa: E402


def _fidelity_rank():
    """bench/fidelity_rank.py (a script, not a package module): its cheap_runs,
    Kendall tau-b and objective reader."""
    spec = importlib.util.spec_from_file_location("fidelity_rank", Path(__file__).with_name("fidelity_rank.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def audit(full: dict[str, tuple[float, ...]], promoted: set[str], senses: list[str], reference: list[float],
          within: float, search_seconds: float, full_seconds: float) -> dict[str, Any]:
    """The front of ``full`` (trial -> full-fidelity values) against the
    ``promoted`` trials (module docstring, 3), as bench/fidelity_rank.py's
    replay compares them."""
    return {**_fidelity_rank().front_kept(full, promoted, senses, reference, within),
            "compute_share": search_seconds / full_seconds if full_seconds > 0 else math.nan}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results_dir", help="a finished search run with --fidelity")
    p.add_argument("--within", type=float, default=0.01, help="a front point counts as kept when a promoted "
                   "point is within this on every objective (fractions; default 1 point)")
    p.add_argument("--cpus-per-run", type=float, default=1.0)
    args = p.parse_args(argv)
    root = Path(args.results_dir)
    try:
        res = load_search(root)
        if not res.spec.get("fidelity_rungs"):
            raise ResultsError(f"{root} is not a --fidelity search (its search.json has no fidelity_rungs)")
        if not all(n in WORST_VALUE for n, _ in res.objectives):
            raise ResultsError(f"the hypervolume needs fraction objectives; this search has "
                               f"{[n for n, _ in res.objectives]}")
    except (ResultsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    fr = _fidelity_rank()
    names = [n for n, _ in res.objectives]
    senses = [s for _, s in res.objectives]
    top = len(res.spec["fidelity_rungs"])
    ladder = fidelity_ladder(res)
    finished = ladder[ladder[names[0]].notna()]
    top_runs = finished[finished["rung"] == top].set_index("trial_id")
    first = finished[finished["rung"] == 0].set_index("trial_id")
    # Stopped: their last run, at a rung below the top, finished and was not promoted.
    stopped_ids = list(finished.loc[~finished["promoted"] & (finished["rung"] < top), "trial_id"])
    rows = res.trials[res.trials["trial_id"].isin(stopped_ids)]
    print(f"# {root.name}: {len(first)} trials ran the first rung, {len(top_runs)} finished the top rung, "
          f"{len(stopped_ids)} were stopped; training the stopped ones at full fidelity")
    records = fr.cheap_runs(root, res, rows, "full", {}, args.cpus_per_run) if len(rows) else {}
    full = {t: tuple(float(top_runs.loc[t, n]) for n in names) for t in top_runs.index}
    full_s = {t: float(top_runs.loc[t, "seconds"]) for t in top_runs.index}
    for t, record in records.items():
        full[t] = fr.objective_values(record, res.objectives)
        full_s[t] = fr.run_seconds(record)
    missing = [t for t in first.index if t not in full]
    if missing:
        print(f"warning: {len(missing)} trial(s) have no full-fidelity value (a failed run); left out",
              file=sys.stderr)
    ids = [t for t in first.index if t in full]
    number = dict(zip(res.trials["trial_id"], res.trials[TRIAL_NUMBER_KEY]))
    print("\n## Rank agreement of the first rung with full fidelity (Kendall tau-b)\n")
    print("| rung | configs | " + " | ".join(f"tau {n}" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    taus = [fr.kendall_tau_b([float(first.loc[t, n]) for t in ids], [full[t][k] for t in ids])
            for k, n in enumerate(names)]
    print(f"| {first['fidelity'].iloc[0]} | {len(ids)} | " + " | ".join(f"{tau:+.2f}" for tau in taus) + " |")
    search_s = float(ladder["seconds"].sum())
    r = audit({t: full[t] for t in ids}, set(top_runs.index), senses, [WORST_VALUE[n] for n in names],
              args.within, search_s, sum(full_s[t] for t in ids))
    show = lambda ts: ", ".join(f"#{number[t]}" for t in ts) or "none"  # noqa: E731
    print("\n## The full-fidelity front of every trial, and what the search kept\n")
    print("| full front | kept (promoted) | within {:g} pt | hypervolume kept | compute of the search |".format(
        100 * args.within))
    print("|---|---|---|---|---|")
    print(f"| {show(r['front'])} | {show(r['kept'])} | {show(r['near'])} | {100 * r['hypervolume_share']:.1f} % | "
          f"{100 * r['compute_share']:.0f} % ({search_s / 60:.1f} of {sum(full_s[t] for t in ids) / 60:.1f} "
          f"run-minutes) |")
    print("\n| trial | promoted | " + " | ".join(f"{n} first rung" for n in names) + " | "
          + " | ".join(f"{n} full" for n in names) + " |")
    print("|---|---|" + "---|" * (2 * len(names)))
    for t in sorted(ids, key=lambda t: number[t]):
        print(f"| #{number[t]} | {'yes' if t in top_runs.index else 'no'} | "
              + " | ".join(f"{100 * float(first.loc[t, n]):.1f}" for n in names) + " | "
              + " | ".join(f"{100 * v:.1f}" for v in full[t]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

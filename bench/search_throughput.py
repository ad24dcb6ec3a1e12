"""Search throughput from finished results folders (issue "Speed", bench 3), and
what early stopping buys: the same table for several searches side by side.

Reads files only: ``search.json`` (when the search was created) and
every ``trials/<id>/result.json`` (the loop's own run time ``train_time_s``, the
images it trained, the file's modification time = when the trial ended; the
status -- completed, or truncated = stopped early -- as the report reads it).
Prints one column per folder:

- trials ended, completed and stopped early; the wall time (creation of the
  folder to the last trial's result) and trials per hour;
- training images and loop seconds summed over trials: the compute spent;
- the share of the wall time the trial slots spent inside the training loop:
  sum(train_time_s) / (wall x slots), where ``slots`` is how many trials can run
  at once (CPUs / CPUs per trial: ``--slots``). The rest is Ray overhead
  (ray.init, worker start-up, reporting, scheduling gaps), the driver's data
  loading and each trial's set-up;
- the Pareto front of the completed trials on the search's objectives (size,
  best value per objective) and its hypervolume (analysis/pareto.py) against a
  fixed reference: accuracy 0, forgetting 1 (the worst possible fractions), so
  two searches' fronts compare as one number (larger = better).

    python bench/search_throughput.py results/icarl-gtsrb-64 --slots 2
    python bench/search_throughput.py results/icarl-gtsrb-64 results/icarl-gtsrb-64-moasha --slots 2
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.metrics import WORST_VALUE  # noqa: E402
from analysis.pareto import hypervolume, non_dominated  # noqa: E402
from analysis.results import ResultsError, load_search, objective_column  # noqa: E402


def _machine(env: dict) -> str:
    cpu = env.get("cpu") or {}
    if cpu.get("model"):
        return f"{cpu['model']} ({', '.join(cpu.get('features') or []) or 'no AMX/AVX512'}), {cpu.get('cpus')} CPUs"
    return f"not recorded ({env.get('cpu_count', '?')} CPUs)"


def summarise(root: Path, slots: int) -> dict[str, str]:
    res = load_search(root)
    spec, df = res.spec, res.trials
    created = time.mktime(time.strptime(spec["created"], "%Y-%m-%d %H:%M:%S"))
    ends, images, loop_s = [], 0, 0.0
    for tid in df["trial_id"]:
        d = res.result(tid)
        ends.append((root / "trials" / str(tid) / "result.json").stat().st_mtime)
        images += sum(int(t.get("images_trained", 0)) for t in d.get("timings") or [])
        loop_s += float(d.get("train_time_s") or 0.0)
        # --fidelity: the cheap runs of the rungs a promoted trial passed (their task seconds).
        for passed in (d.get("fidelity") or {}).get("history") or []:
            images += int(passed.get("images_trained") or 0)
            loop_s += float(passed.get("seconds") or 0.0)
    if not ends:
        raise ResultsError(f"{root} has no trial results")
    wall = max(ends) - created
    counts = df["status"].value_counts()
    ended = len(df) - int(counts.get("running", 0))
    objectives = [(n, s) for n, s in res.objectives]
    done = df[df["status"] == "completed"]
    cols = [objective_column(n, res.task_incremental_only) for n, _ in objectives]
    senses = [s for _, s in objectives]
    front = done[non_dominated(done[cols].to_numpy(float), senses)] if len(done) else done
    early = "none"
    if spec.get("fidelity_rungs"):
        from core.fidelity import describe
        early = (f"successive halving over {'; '.join(describe(r) for r in spec['fidelity_rungs'])} then full, "
                 f"factor {spec.get('reduction_factor')} ({spec.get('promotion')})")
    elif spec.get("asha") or spec.get("mo_asha"):
        early = (f"{'MO-ASHA' if spec.get('mo_asha') else 'ASHA'} grace {spec.get('grace_tasks', 1)} "
                 f"factor {spec.get('reduction_factor', 2)}")
    out = {
        "search": f"{spec['method']} on {spec['stream_protocol']['dataset']}, {spec['trials']} trials",
        # The machine the search ran on, as its search.json recorded it (searches
        # from before the CPU was recorded: its CPU count only).
        "machine": _machine(spec.get("environment") or {}),
        "precision": str(spec["loop"].get("precision")),
        "early stopping": early,
        "trials ended": f"{ended} ({int(counts.get('completed', 0))} completed, "
                        f"{int(counts.get('truncated', 0))} stopped early)",
        "wall time": f"{wall / 60:.1f} min",
        "trials / hour": f"{ended / (wall / 3600):.1f}",
        "training images": f"{images / 1e6:.2f} M ({images / max(ended, 1) / 1e3:.0f} k per trial)",
        "loop time": f"{loop_s / 60:.1f} min ({loop_s / max(ended, 1):.0f} s per trial)",
        "in the loop": f"{100 * loop_s / (wall * slots):.1f} % of {slots} slots' time",
        "front size": str(len(front)),
    }
    for (name, sense), col in zip(objectives, cols):
        if len(front):
            best = front[col].max() if sense == "max" else front[col].min()
            out[f"front {'best' if sense == 'max' else 'lowest'} {name}"] = (
                f"{100 * best:.1f} %" if name in WORST_VALUE else f"{best:g}")
    if all(n in WORST_VALUE for n, _ in objectives) and len(done):
        hv = hypervolume(done[cols].to_numpy(float), senses, [WORST_VALUE[n] for n, _ in objectives])
        out["front hypervolume"] = f"{hv:.4f}"
    if counts.get("running", 0):
        out["note"] = f"{int(counts['running'])} trials still running: the figures are partial"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results_dirs", nargs="+", metavar="results_dir")
    p.add_argument("--slots", type=int, required=True, help="trials that can run at once (CPUs / CPUs per trial)")
    args = p.parse_args(argv)
    try:
        columns = [summarise(Path(d), args.slots) for d in args.results_dirs]
    except (ResultsError, OSError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = list(dict.fromkeys(k for c in columns for k in c))
    names = [Path(d).name for d in args.results_dirs]
    print("| | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for row in rows:
        print(f"| {row} | " + " | ".join(c.get(row, "") for c in columns) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Search throughput from a finished results folder (issue "Speed", bench 3).

Reads files only (DESIGN §2): ``search.json`` (when the search was created) and
every ``trials/<id>/result.json`` (the loop's own run time ``train_time_s`` and
the file's modification time = when the trial finished). Prints:

- trials finished and the search's wall time (creation of the folder to the last
  trial's result);
- trials per hour;
- the share of the wall time the trial slots spent inside the training loop:
  sum(train_time_s) / (wall x slots), where ``slots`` is how many trials can run
  at once (CPUs / CPUs per trial; pass it with ``--slots``). The rest is Ray
  overhead (ray.init, worker start-up, result reporting, scheduling gaps), the
  driver's dataset loading and each trial's stream/model set-up.

    python bench/search_throughput.py results/icarl-gtsrb-64 --slots 2
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results_dir")
    p.add_argument("--slots", type=int, required=True, help="trials that can run at once (CPUs / CPUs per trial)")
    args = p.parse_args(argv)
    root = Path(args.results_dir)
    try:
        search = json.loads((root / "search.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: {root / 'search.json'}: {type(exc).__name__}", file=sys.stderr)
        return 2
    created = time.mktime(time.strptime(search["created"], "%Y-%m-%d %H:%M:%S"))
    runs, ends = [], []
    for path in sorted(root.glob("trials/*/result.json")):
        d = json.loads(path.read_text())
        runs.append(d)
        ends.append(path.stat().st_mtime)
    if not runs:
        print(f"error: {root} has no trial results", file=sys.stderr)
        return 2
    wall = max(ends) - created
    completed = [d for d in runs if d.get("status") == "completed"]
    running = [d for d in runs if d.get("status") == "running"]
    if running:
        print(f"note: {len(running)} trials are still running: the figures are partial")
    loop_s = sum(float(d.get("train_time_s") or 0.0) for d in runs)
    busy = loop_s / (wall * args.slots)
    print(f"search          {search['method']} on {search['protocol']['dataset']}, {search['trials']} trials requested, "
          f"precision {search['protocol'].get('precision')}")
    print(f"trials ended    {len(runs) - len(running)} ({len(completed)} completed)")
    print(f"wall time       {wall / 60:.1f} min (folder created -> last trial result)")
    print(f"trials / hour   {(len(runs) - len(running)) / (wall / 3600):.1f}")
    print(f"mean loop time  {loop_s / len(runs):.1f} s per trial (inside the training loop)")
    print(f"slots           {args.slots}")
    print(f"in the loop     {100 * busy:.1f} % of slot time")
    print(f"overhead        {100 * (1 - busy):.1f} % (Ray start-up and scheduling, worker start, reporting, set-up)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

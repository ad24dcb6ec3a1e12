"""How fast the command lines answer before any work: ``--help`` and argument errors.

    .venv/bin/python bench/cli_startup.py [--repeats 5]

Each case runs the command as a user would (a fresh interpreter per run) and
reports the median wall time, and whether torch or Ray was imported on the way
(they take seconds to import on a small machine; ``--help`` and an argument
typo must not wait for them). The target is under 2 s per case; a case that
has to look at the method registry (an unknown method: the registry lives in
the strategy modules, which import torch) is shown for comparison. The CPU
model is printed with the figures: start-up time is mostly import time, which
follows the CPU and the disk cache.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (label, script, arguments, expected exit code)
CASES = [
    ("search --help", "search/run.py", ["--help"], 0),
    ("search, no arguments (usage)", "search/run.py", [], 2),
    ("search, bad option value", "search/run.py", ["--trials", "many"], 2),
    ("search, unknown method", "search/run.py", ["--method", "nosuch"], 2),
    ("rerun --help", "search/rerun.py", ["--help"], 0),
    ("rerun, bad option value", "search/rerun.py", ["--seeds", "x"], 2),
    ("report --help", "analysis/report.py", ["--help"], 0),
]

# Run the script in-process under a wrapper that prints, at exit, which heavy modules were imported.
PROBE = ("import atexit, runpy, sys\n"
         "atexit.register(lambda: sys.__stderr__.write('\\nHEAVY ' + ','.join(m for m in ('torch', 'ray', 'optuna') "
         "if m in sys.modules) + '\\n'))\n"
         "sys.argv = sys.argv[1:]\n"
         "runpy.run_path(sys.argv[0], run_name='__main__')\n")


def run_case(script: str, args: list[str]) -> tuple[float, int, str]:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROBE, str(ROOT / script), *args], capture_output=True,
                          text=True, env=env, cwd=ROOT)
    elapsed = time.perf_counter() - t0
    heavy = next((line[6:] for line in proc.stderr.splitlines() if line.startswith("HEAVY ")), "?")
    return elapsed, proc.returncode, heavy or "none"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from core.machine import machine_line
    print(f"{machine_line()}; median of {args.repeats} runs; python {sys.version.split()[0]}")
    print("| case | exit | median s | max s | heavy imports |")
    print("|---|---|---|---|---|")
    worst_fast = 0.0
    for label, script, case_args, want in CASES:
        times, codes, heavy = [], set(), ""
        for _ in range(args.repeats):
            t, code, heavy = run_case(script, case_args)
            times.append(t)
            codes.add(code)
        if codes != {want}:
            print(f"{label}: exit codes {sorted(codes)}, expected {want}", file=sys.stderr)
            return 1
        if "torch" not in heavy and "ray" not in heavy:
            worst_fast = max(worst_fast, statistics.median(times))
        print(f"| {label} | {want} | {statistics.median(times):.2f} | {max(times):.2f} | {heavy} |")
    print(f"\nslowest case without torch/Ray: {worst_fast:.2f} s (target < 2 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

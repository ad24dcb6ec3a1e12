"""The course notebook's acceptance checks on the GTSRB strategy table.

Reads the direct-run folders written by ``bench/strategy_table.sh`` (files only)
and prints, per method and seed, the iCaRL-style curve: pooled class-IL test
accuracy on all classes seen so far after each task (``core.metrics.
accuracy_curves``), next to the notebook's figures:

- finetune: final accuracy below 25 % (notebook 12.9 %);
- joint: final accuracy at least 88 % (notebook 89.8 %);
- replay+KD and iCaRL at memory 200: above the notebook's rehearsal-KD curve
  (90.2, 74.7, 68.3, 56.0, 56.8 %) at every task after the first.

    python bench/notebook_checks.py results/strategy-table
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.metrics import accuracy_curves  # noqa: E402

NOTEBOOK_KD_CURVE = [90.2, 74.7, 68.3, 56.0, 56.8]


def curves(folder: Path) -> list[tuple[str, list[float], float]]:
    out = []
    for path in sorted(folder.glob("seed*/result.json")):
        d = json.loads(path.read_text())
        curve = [100 * v for v in accuracy_curves(d["acc_class_il"], d["eval_sizes"])["all_seen"]]
        out.append((path.parent.name, curve, 100 * d["metrics"]["class_il"]["final_acc"]))
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path("results/strategy-table")
    print("| method | seed | all seen classes after task 1..5 (pooled %) | final acc (macro) % | check |")
    print("|---|---|---|---|---|")
    for method in ("finetune", "joint", "replay+kd", "replay+kd-lr0.02", "icarl"):
        for seed, curve, final in curves(root / method):
            if method == "finetune":
                ok, rule = final < 25, "final < 25 %"
            elif method == "joint":
                ok, rule = final >= 88, "final >= 88 %"
            else:
                ok = all(c > n for c, n in zip(curve[1:], NOTEBOOK_KD_CURVE[1:]))
                rule = "above the notebook curve at tasks 2-5"
            cells = ", ".join(f"{c:.1f}" for c in curve)
            print(f"| {method} | {seed} | {cells} | {final:.2f} | {'pass' if ok else 'FAIL'}: {rule} |")
    print(f"| notebook rehearsal-KD | | {', '.join(f'{c:.1f}' for c in NOTEBOOK_KD_CURVE)} | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

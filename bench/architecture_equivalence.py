"""Record (or compare) every strategy's accuracy matrices on fixed seeds.

A refactor that promises "behaviour unchanged" proves it here: record the
matrices before the change, record them again after, and compare them bit for
bit (exact float equality; a difference prints the largest absolute change).

    python bench/architecture_equivalence.py --out /tmp/before.json
    ... change the code ...
    python bench/architecture_equivalence.py --out /tmp/after.json --compare /tmp/before.json

Runs every registered strategy with its default config on the embedded digits
stream (10 classes in 5 tasks, 2 epochs, crop augmentation, so DER's
re-balancing and PackNet's retraining run too) and, with ``--gtsrb``, DER on a
small GTSRB protocol (16 classes in 2 tasks, 1 epoch). One torch thread, CPU,
seed 0. Each run records both accuracy matrices and a SHA-256 of its trained
weights.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _run(method: str, stream, **loop_overrides) -> dict:
    from strategies.loop import LoopConfig, make_strategy, run

    loop_cfg = LoopConfig(**{"epochs": 2, "batch_size": 32, "augment": "crop", "eval_split": "val",
                             "seed": 0, "device": "cpu", "threads": 1, **loop_overrides})
    strategy = make_strategy(method, None, stream, loop_cfg)
    result = run(strategy, stream, loop_cfg, log=None)
    # A fingerprint of the trained weights: equal matrices could hide a change
    # that did not move an argmax; equal weights cannot.
    digest = hashlib.sha256()
    for _, tensor in sorted(strategy.model.state_dict().items()):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return {"status": result.status, "class_il": result.acc_class_il, "task_il": result.acc_task_il,
            "weights_sha256": digest.hexdigest()}


def record(gtsrb: bool) -> dict:
    import torch

    import strategies
    from datasets import build_stream, load_digits, load_gtsrb

    torch.set_num_threads(1)
    stream = build_stream(load_digits(), num_tasks=5, val_fraction=0.1, seed=0)
    out = {}
    for method in sorted(strategies.STRATEGIES):
        out[f"digits/{method}"] = _run(method, stream)
        print(f"digits/{method}: {out[f'digits/{method}']['status']}", flush=True)
    if gtsrb:
        g = build_stream(load_gtsrb(), num_tasks=2, classes=16, val_fraction=0.1, seed=0)
        out["gtsrb/der"] = _run("der", g, epochs=1, batch_size=128)
        print(f"gtsrb/der: {out['gtsrb/der']['status']}", flush=True)
    return out


def compare(now: dict, before: dict) -> int:
    differ = 0
    for key in sorted(set(now) | set(before)):
        if key not in now or key not in before:
            print(f"{key}: only in {'after' if key in now else 'before'}")
            differ += 1
            continue
        worst = 0.0
        for split in ("class_il", "task_il"):
            for ra, rb in zip(now[key][split], before[key][split]):
                for a, b in zip(ra, rb):
                    if (a is None) != (b is None):
                        worst = float("inf")
                    elif a is not None and b is not None:
                        worst = max(worst, abs(a - b))
        weights = now[key].get("weights_sha256") == before[key].get("weights_sha256")
        same = worst == 0.0 and weights and now[key]["status"] == before[key]["status"] \
            and len(now[key]["class_il"]) == len(before[key]["class_il"])
        differ += not same
        print(f"{key}: {'identical' if same else f'DIFFERS (largest matrix change {worst:.4f}, weights equal: {weights})'}")
    print(f"{len(set(now) | set(before)) - differ} identical, {differ} differ")
    return 1 if differ else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="where to write the recorded matrices (JSON)")
    p.add_argument("--compare", default=None, help="an earlier recording to compare with, bit for bit")
    p.add_argument("--gtsrb", action="store_true", help="also DER on a small GTSRB protocol (needs $CL_DATA_DIR)")
    args = p.parse_args()
    now = record(args.gtsrb)
    Path(args.out).write_text(json.dumps(now, indent=1))
    if args.compare:
        return compare(now, json.loads(Path(args.compare).read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

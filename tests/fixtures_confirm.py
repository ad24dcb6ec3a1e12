"""A hand-made search folder with confirmation trials (no training, no Ray).

``write_confirm_fixture(root)`` writes what ``search/run.py --confirm-seeds 1``
leaves before the report: four trials of the search (seed 0) and one
confirmation trial (seed 1) per front candidate, with 3-task matrices whose
final accuracy / forgetting are known by hand:

=====  ========  ====  ===================  ======================  ===========================
trial  confirms  seed  final acc / forget.  seed mean (± std)       front before -> after
=====  ========  ====  ===================  ======================  ===========================
0      -         0     80 % / 5 %  (lucky)  70 ± 14.1 / 10 ± 7.1    yes -> no (dominated by 1)
1      -         0     75 % / 4 %           74.5 ± 0.7 / 4 ± 0      yes -> yes
2      -         0     50 % / 1 %           50 ± 0 / 1 ± 0          yes -> yes
3      -         0     45 % / 20 %          -                       no (not a candidate)
4      0         1     60 % / 15 %
5      1         1     74 % / 4 %
6      2         1     50 % / 1 %
=====  ========  ====  ===================  ======================  ===========================

Trial 0 is on the front only thanks to its seed: "2 of 3 front points survive
confirmation". ``CONFIRMED_FRONT`` is the front after (trials 1 and 2).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fixtures_results import _R, trial_id, write_search_fixture


def _t(n: int, R, lr: float, memory: int, **extra: Any) -> dict[str, Any]:
    return {"n": n, "status": "completed", "params": {"lr": lr, "memory": memory, "selection": "random"},
            "R": R, **extra}


#                         a    b    c    d    e    f   -> final = (d + e + f) / 3, forgetting = ((max(a,b) - d) + (c - e)) / 2
LUCKY = _R(.90, .90, .90, .85, .85, .70)        # 80 % / 5 %
LUCKY_AGAIN = _R(.80, .80, .80, .65, .65, .50)  # 60 % / 15 %
STEADY = _R(.80, .80, .80, .76, .76, .73)       # 75 % / 4 %
STEADY_AGAIN = _R(.80, .80, .80, .76, .76, .70)  # 74 % / 4 %
LOW = _R(.60, .60, .60, .59, .59, .32)          # 50 % / 1 %
DOMINATED = _R(.70, .70, .70, .50, .50, .35)    # 45 % / 20 %

MAIN = [_t(0, LUCKY, 1.0, 500), _t(1, STEADY, 0.1, 200), _t(2, LOW, 0.02, 60), _t(3, DOMINATED, 0.5, 100)]
# (trial number, the candidate it confirms, matrix)
CONFIRMATIONS = [(4, 0, LUCKY_AGAIN), (5, 1, STEADY_AGAIN), (6, 2, LOW)]
FRONT_BEFORE = [0, 1, 2]
CONFIRMED_FRONT = [1, 2]


def write_confirm_fixture(root: str | Path) -> Path:
    """The search folder of the table above (search.json with ``confirm_seeds`` 1,
    trials/<id>/result.json); trials.csv is not written."""
    params = {n: t["params"] for n, t in ((t["n"], t) for t in MAIN)}
    trials = MAIN + [_t(n, R, params[of]["lr"], params[of]["memory"]) for n, of, R in CONFIRMATIONS]
    root = write_search_fixture(root, trials=trials)
    spec_file = root / "search.json"
    spec = json.loads(spec_file.read_text())
    spec.update(trials=len(MAIN), confirm_seeds=1)
    spec_file.write_text(json.dumps(spec, indent=1))
    for n, of, _ in CONFIRMATIONS:
        f = root / "trials" / trial_id(n) / "result.json"
        d = json.loads(f.read_text())
        d["confirms"] = of
        d["protocol"]["seed"] = 1
        d["trial_number"] = n
        f.write_text(json.dumps(d, indent=1))
    return root

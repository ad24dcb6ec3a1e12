"""bench/fidelity_rank.py: Kendall's tau-b and the successive-halving replay on
hand-made values, and the whole measurement on a tiny real search."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SENSES = ["max", "min"]
REFERENCE = [0.0, 1.0]  # accuracy 0, forgetting 1


def _bench():
    spec = importlib.util.spec_from_file_location("fidelity_rank", ROOT / "bench" / "fidelity_rank.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kendall_tau_b_by_hand():
    tau = _bench().kendall_tau_b
    # One swapped pair of six: (5 - 1) / 6.
    assert tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # A tie on each side: C = 4, D = 0, n0 = 6, one tie in x and one in y -> 4 / sqrt(5 * 5).
    assert tau([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)
    # NaN pairs are dropped; a constant side has no ranking.
    assert tau([1, float("nan"), 2, 3], [1, 5, 2, 3]) == pytest.approx(1.0)
    assert tau([1, 1, 1], [1, 2, 3]) != tau([1, 1, 1], [1, 2, 3])  # NaN


# Full fidelity: front A (best accuracy), D, B (least forgetting); C is dominated by A.
FULL = {"A": (0.8, 0.2), "B": (0.6, 0.05), "C": (0.5, 0.3), "D": (0.7, 0.1)}
# The cheap pass: A and B on its first front, C and D behind A.
CHEAP = {"A": (0.5, 0.15), "B": (0.3, 0.02), "C": (0.45, 0.25), "D": (0.2, 0.3)}
FULL_S = {k: 10.0 for k in FULL}
CHEAP_S = {k: 2.0 for k in FULL}


def test_the_replay_promotes_the_cheap_front_and_scores_it_at_full_fidelity():
    r = _bench().replay(FULL, CHEAP, SENSES, REFERENCE, eta=2, infeasible={}, within=0.01,
                        full_s=FULL_S, cheap_s=CHEAP_S)
    assert r["promoted"] == {"A", "B"}
    assert sorted(r["front"]) == ["A", "B", "D"] and r["kept"] == ["A", "B"] and r["near"] == []
    # Hypervolume by hand against (0, 1): all = 0.8*0.8 + 0.7*0.1 + 0.6*0.05 = 0.74;
    # A and B = 0.64 + 0.6*0.15 = 0.73.
    assert r["hypervolume_share"] == pytest.approx(0.73 / 0.74)
    # Compute: 4 cheap passes (2 s) + 2 full reruns (10 s) against 4 full runs.
    assert r["compute_share"] == pytest.approx((4 * 2 + 2 * 10) / 40)
    # D is within 0.11 of A on both objectives: kept as near.
    wide = _bench().replay(FULL, CHEAP, SENSES, REFERENCE, eta=2, infeasible={}, within=0.11,
                           full_s=FULL_S, cheap_s=CHEAP_S)
    assert wide["near"] == ["D"]


def test_a_config_that_did_not_learn_at_the_cheap_fidelity_is_not_promoted():
    r = _bench().replay(FULL, CHEAP, SENSES, REFERENCE, eta=2, infeasible={"B": 0.1}, within=0.01,
                        full_s=FULL_S, cheap_s=CHEAP_S)
    assert r["promoted"] == {"A", "C"}  # C dominates D at the cheap pass
    assert r["kept"] == ["A"]


def test_the_replay_applies_the_schedulers_rules_synchronously_and_as_it_decides_live():
    def run(rule, asynchronous):
        return _bench().replay(FULL, CHEAP, SENSES, REFERENCE, eta=2, infeasible={}, within=0.01, full_s=FULL_S,
                               cheap_s=CHEAP_S, rule=rule, asynchronous=asynchronous)["promoted"]
    # first: the two most accurate cheap runs, A and C, either way (C is the best of
    # the three done when it arrives, and D is below both).
    assert run("first", False) == run("first", True) == {"A", "C"}
    # split, all at once: one slot by accuracy (A), one by Pareto rank (A, B on the
    # cheap front: B).
    assert run("split", False) == {"A", "B"}
    # split as the live scheduler decides, in arrival order A, B, C, D: A alone goes
    # on; B (1 slot of 2: A's) stops; C (2 of 3: A by accuracy, then B by Pareto rank)
    # stops; D likewise. A trial stopped on arrival is not called back later.
    assert run("split", True) == {"A"}


def test_bad_fidelities_are_one_line_reasons():
    import argparse

    cheap = _bench().cheap_fidelities
    ns = dict(epochs=None, train_fraction=[], eval_fraction=1.0)
    assert cheap(argparse.Namespace(**ns), 5) == [("epochs1", {"epochs": 1}), ("epochs2", {"epochs": 2})]
    assert cheap(argparse.Namespace(**{**ns, "train_fraction": [0.25], "eval_fraction": 0.5}), 5) == [
        ("train0.25-eval0.5", {"train_fraction": 0.25, "eval_fraction": 0.5})]
    assert "between 1 and the search's 5" in cheap(argparse.Namespace(**{**ns, "epochs": [6]}), 5)
    assert "not a share" in cheap(argparse.Namespace(**{**ns, "train_fraction": [0]}), 5)
    assert "not a share" in cheap(argparse.Namespace(**{**ns, "eval_fraction": 1.5}), 5)


@pytest.mark.slow  # Ray starts: a 4-trial search, then the cheap passes
def test_the_measurement_on_a_real_search_reproduces_full_fidelity_and_resumes(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    search = subprocess.run(
        [sys.executable, str(ROOT / "search" / "run.py"), "--method", "finetune", "--dataset", "synthetic",
         "--epochs", "2", "--trials", "4", "--cpus-per-trial", "1", "--min-plasticity-margin", "0",
         "--confirm-seeds", "0", "--name", "s", "--results-root", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert search.returncode == 0, search.stderr[-2000:]
    folder = tmp_path / "s"
    bench = [sys.executable, str(ROOT / "bench" / "fidelity_rank.py"), str(folder), "--eta", "2"]
    proc = subprocess.run([*bench, "--epochs", "1", "2", "--train-fraction", "0.5"], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted((folder / "fidelity").glob("*/*/seed0/result.json"))
    assert sorted({p.parts[-4] for p in runs}) == ["epochs1", "epochs2", "train0.5"] and len(runs) == 12
    for path in runs:
        d = json.loads(path.read_text())
        trial = json.loads((folder / "trials" / path.parts[-3].split("-", 1)[1] / "result.json").read_text())
        assert d["status"] == "completed" and d["protocol"]["eval_split"] == "val"
        if path.parts[-4] == "train0.5":  # half of each class's images, at the search's 2 epochs
            assert d["protocol"]["train_fraction"] == 0.5 and d["protocol"]["epochs"] == 2
            assert sum(t["images_trained"] for t in d["timings"]) < sum(t["images_trained"] for t in trial["timings"])
            continue
        assert d["protocol"]["epochs"] == int(path.parts[-4][len("epochs"):])
        if d["protocol"]["epochs"] == 2:  # the search's own fidelity: the trial's numbers again
            assert d["acc_class_il"] == trial["acc_class_il"]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| epochs2 | 4 |")]
    assert rows and rows[0].startswith("| epochs2 | 4 | +1.00 | +1.00 |"), proc.stdout
    assert "| epochs1 | 2 | pareto | sync | 2 of 4 |" in proc.stdout
    assert "| train0.5 | 2 | split | sync | 2 of 4 |" in proc.stdout
    # Again: every cheap run is kept, nothing is trained.
    again = subprocess.run([*bench, "--train-fraction", "0.5"], capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and "finished earlier and are kept" in again.stdout + again.stderr


def test_the_audit_of_a_fidelity_search_by_hand():
    """bench/fidelity_audit.py: the full-fidelity front of every trial against the promoted ones."""
    spec = importlib.util.spec_from_file_location("fidelity_audit", ROOT / "bench" / "fidelity_audit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    r = module.audit(FULL, {"A", "B"}, SENSES, REFERENCE, within=0.01, search_seconds=30.0, full_seconds=40.0)
    assert sorted(r["front"]) == ["A", "B", "D"] and r["kept"] == ["A", "B"] and r["near"] == []
    assert r["hypervolume_share"] == pytest.approx(0.73 / 0.74)  # as in the replay above
    assert r["compute_share"] == pytest.approx(0.75)
    assert module.audit(FULL, {"A", "B"}, SENSES, REFERENCE, within=0.11, search_seconds=1, full_seconds=1)["near"] == ["D"]

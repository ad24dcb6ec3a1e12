"""The front under seed noise (search/run.py --confirm-seeds; analysis/confirm.py; search/confirm.py).

Fast tests on a hand-made folder (tests/fixtures_confirm.py: trial 0 is on the
front only thanks to a lucky seed) check the confirmed front, the report's
section and ``rerun.py --pick front``; one slow test runs a tiny search with a
confirmation per front candidate and resumes it.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from analysis.confirm import MEAN, STD, confirmed_front, seed_front, survival_text
from analysis.results import load_search, write_trials_csv
from tests.fixtures_confirm import CONFIRMED_FRONT, FRONT_BEFORE, write_confirm_fixture
from tests.fixtures_results import trial_id


@pytest.fixture
def confirm_dir(tmp_path) -> Path:
    d = write_confirm_fixture(tmp_path / "search")
    write_trials_csv(d)
    return d


def test_seed_means_push_a_lucky_point_off_the_front(confirm_dir):
    results = load_search(confirm_dir)
    # Confirmation rows are in the table with their seed, and never eligible on their own.
    df = results.trials.set_index("trial_number")
    assert list(df.loc[[4, 5, 6], "confirms"]) == [0, 1, 2] and list(df.loc[[4, 5, 6], "seed"]) == [1, 1, 1]
    assert df.loc[[0, 1, 2, 3], "confirms"].isna().all() and (df.loc[[0, 1, 2, 3], "seed"] == 0).all()
    assert list(results.eligible) == [True] * 4 + [False] * 3
    t = confirmed_front(results).set_index("trial_number")
    assert list(t.index) == FRONT_BEFORE and t["front_before"].all()
    assert list(t.index[t["front_after"]]) == CONFIRMED_FRONT
    # Trial 0: 80 % / 5 % on its own seed, 60 % / 15 % on the next: mean 70 / 10, std 14.1 / 7.1.
    assert t.loc[0, "final_acc" + MEAN] == pytest.approx(0.70)
    assert t.loc[0, "forgetting" + MEAN] == pytest.approx(0.10)
    assert t.loc[0, "final_acc" + STD] == pytest.approx(0.1414, abs=1e-4)
    assert t.loc[0, "dominated_by"] == [1] and t.loc[1, "dominated_by"] == [] and t.loc[0, "seeds"] == 2
    assert t.loc[1, "final_acc" + MEAN] == pytest.approx(0.745) and t.loc[0, "seed_list"] == "0, 1"
    assert survival_text(t) == "2 of 3 front points survive confirmation"


def test_seed_front_on_hand_made_numbers():
    # A lucky seed: A 80/5 then 60/15; B 75/4 then 74/4 -> A's mean (70/10) is dominated by B's (74.5/4).
    df = pd.DataFrame({"trial_number": [0, 1, 2, 3], "trial_id": list("ABab"),
                       "status": ["completed"] * 4, "confirms": [None, None, 0, 1], "seed": [0, 0, 1, 1],
                       "acc": [0.80, 0.75, 0.60, 0.74], "forg": [0.05, 0.04, 0.15, 0.04]})
    eligible = df["confirms"].isna()
    t = seed_front(df, {"acc": "max", "forg": "min"}, eligible)
    assert list(t["trial_id"]) == ["A", "B"] and list(t["front_after"]) == [False, True]
    assert list(t["dominated_by"]) == [[1], []]
    # Without confirmations each candidate has one seed: the front stands, std undefined.
    t1 = seed_front(df.iloc[:2], {"acc": "max", "forg": "min"}, eligible.iloc[:2])
    assert t1["front_after"].all() and t1["acc" + STD].isna().all()


def test_report_shows_mean_and_std_and_the_front_before_and_after(confirm_dir):
    from analysis.report import build_report

    build_report([confirm_dir])
    md = (confirm_dir / "report.md").read_text()
    m = re.search(r"^## Front under seed noise\n(.*?)(?=^## |\Z)", md, flags=re.S | re.M)
    assert m, "no seed-noise section"
    text = m.group(1)
    assert "2 of 3 front points survive confirmation" in text
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    assert "70.0 ± 14.1" in lines["0"] and "10.0 ± 7.1" in lines["0"]
    assert re.search(r"\| yes \| no \| #1 \|$", lines["0"]), lines["0"]
    assert "74.5 ± 0.7" in lines["1"] and re.search(r"\| yes \| yes \| – \|$", lines["1"]), lines["1"]
    assert "front before" in lines["#"] and "front after" in lines["#"]
    # The main front table still lists the three candidates (their own seeds), never a confirmation.
    front = re.search(r"^## Pareto front\n(.*?)(?=^## |\Z)", md, flags=re.S | re.M).group(1)
    assert trial_id(0) in front and trial_id(4) not in front and "3 of 4 completed" in front
    assert "Front under seed noise" in (confirm_dir / "report.html").read_text()


def test_a_cross_method_search_is_confirmed_on_its_combined_front(tmp_path):
    """The fixture made a search across icarl and finetune, trial 1 and its
    confirmation 5 being finetune's. The confirmation phase ran the combined
    front (0, 1, 2); the report reads it back as one table named across
    methods: icarl#0's lucky seed is dominated by finetune#1's mean -- which a
    per-method view (icarl's own front: 0 and 2) could not say."""
    from analysis.report import build_report
    from tests.fixtures_results import make_cross_method

    folder = make_cross_method(write_confirm_fixture(tmp_path / "mixed"), finetune_trials=(1, 5))
    write_trials_csv(folder)

    build_report([folder], warn=lambda line: None)
    md = (folder / "report.md").read_text()
    text = re.search(r"^## Front under seed noise\n(.*?)(?=^## |\Z)", md, flags=re.S | re.M).group(1)
    assert "### " not in text  # one table, not one per method
    assert "2 of 3 front points survive confirmation" in text and "fewer confirmations" not in text
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    assert set(lines) == {"#", "icarl#0", "finetune#1", "icarl#2"}
    assert "| finetune |" in lines["finetune#1"] and "74.5 ± 0.7" in lines["finetune#1"]
    assert re.search(r"\| yes \| no \| finetune#1 \|$", lines["icarl#0"]), lines["icarl#0"]
    assert re.search(r"\| yes \| yes \| – \|$", lines["icarl#2"]), lines["icarl#2"]


def test_report_without_confirmations_has_no_seed_noise_section(tmp_path):
    from analysis.report import build_report
    from tests.fixtures_results import write_search_fixture

    d = write_search_fixture(tmp_path / "plain")
    write_trials_csv(d)
    build_report([d])
    assert "Front under seed noise" not in (d / "report.md").read_text()


def test_rerun_pick_front_takes_the_confirmed_front(confirm_dir):
    from search.rerun import pick_trials

    chosen = pick_trials(load_search(confirm_dir), ["front"])
    assert sorted(int(n) for n in chosen["trial_number"]) == CONFIRMED_FRONT


@pytest.mark.slow  # Ray search in a subprocess, then its --resume
def test_search_confirms_its_front_and_resume_adds_nothing(tmp_path):
    from tests.test_search import search

    # TINY says --confirm-seeds 0; the later value wins.
    args = ["--method", "replay", "--trials", "3", "--name", "conf", "--set", "memory=30", "--max-concurrent", "2",
            "--no-report", "--confirm-seeds", "1"]
    proc = search(tmp_path, *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "conf"
    assert json.loads((out / "search.json").read_text())["confirm_seeds"] == 1
    df = pd.read_csv(out / "trials.csv")
    main, conf = df[df["confirms"].isna()], df[df["confirms"].notna()]
    assert len(main) == 3 and set(main["status"]) == {"completed"} and (main["seed"] == 0).all()
    results = load_search(out)
    front = confirmed_front(results)
    # One confirmation per front candidate, seed 1, numbered after the search's trials.
    assert sorted(conf["confirms"].astype(int)) == sorted(front["trial_number"].astype(int))
    assert (conf["seed"] == 1).all() and set(conf["status"]) <= {"completed", "infeasible"}
    assert df["trial_number"].is_unique and df["trial_id"].is_unique
    assert sorted(conf["trial_number"]) == list(range(3, 3 + len(conf)))
    assert (front["seeds"] == 2).all() and (out / "tune-confirm").is_dir()
    for tid in conf["trial_id"]:
        record = json.loads((out / "trials" / tid / "result.json").read_text())
        assert record["protocol"]["seed"] == 1 and isinstance(record["confirms"], int)
    assert "front confirmation" in proc.stdout

    before = (out / "trials.csv").read_text()
    # The same command again, as a user would rerun it (an explicit --confirm-seeds always applies).
    again = search(tmp_path, *args, "--resume")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "every confirmation has run" in again.stdout
    assert (out / "trials.csv").read_text() == before  # same rows: nothing rerun, nothing added
    assert not (out / "tune-confirm-2").exists()


@pytest.mark.slow  # Ray search in a subprocess, Ctrl-C in its confirmation phase, then --resume
def test_a_confirmation_phase_interrupted_by_ctrl_c_resumes_without_repeats(tmp_path):
    """Ctrl-C while a confirmation trial is past its first task: exit 130 with the
    resume command; ``--resume`` continues the confirmation experiment (the
    stopped trial from its checkpoint, the rest as its list searcher left
    them) and ends with every (candidate, seed) pair confirmed exactly once,
    in the same Tune experiment."""
    import os
    import signal
    import sys
    import time

    from tests.test_search import RUN, TINY, _env

    args = [*RUN, *TINY, "--results-root", str(tmp_path), "--method", "replay", "--trials", "3", "--name", "confi",
            "--set", "memory=30", "--max-concurrent", "1", "--epochs", "30", "--no-report", "--confirm-seeds", "2"]
    out = tmp_path / "confi"
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
                            cwd=tmp_path, start_new_session=True)
    seen = None
    deadline = time.time() + 300
    while seen is None and time.time() < deadline and proc.poll() is None:
        for f in (out / "trials").glob("*/result.json"):
            try:
                d = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if d.get("confirms") is not None and d.get("status") == "running" and len(d.get("acc_task_il", [])) >= 1:
                seen = d["trial_id"]
        time.sleep(0.05)
    assert seen is not None, "no confirmation trial was seen running"
    os.killpg(proc.pid, signal.SIGINT)
    first, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, first[-3000:]
    assert "front confirmation interrupted" in first and "--resume" in first

    again = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=300, env=_env(),
                           cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming the front confirmation from" in again.stdout, again.stdout[-3000:]
    df = pd.read_csv(out / "trials.csv")
    main, conf = df[df["confirms"].isna()], df[df["confirms"].notna()]
    # every search trial ended (a sampled lr may diverge: an ended trial too)
    assert len(main) == 3 and set(main["status"]) <= {"completed", "infeasible", "diverged"}, main
    from search.confirm import candidates
    front = candidates(out)  # the search's front: what the phase confirms
    pairs = sorted(zip(conf["confirms"].astype(int), conf["seed"].astype(int)))
    # Every candidate with seeds 1 and 2, once each; all finished; one experiment.
    assert pairs == sorted((c.number, s) for c in front for s in (1, 2)), pairs
    assert set(conf["status"]) <= {"completed", "infeasible"}, conf[["trial_id", "status", "error"]]
    assert df["trial_id"].is_unique and df["trial_number"].is_unique
    assert seen in set(conf["trial_id"]) and not (out / "tune-confirm-2").exists()
    assert not (out / "trials_orphaned").exists()
    print(f"interrupted at confirmation {seen}; resumed: {len(conf)} confirmations of "
          f"{len(front)} candidate(s), trial numbers {sorted(df['trial_number'])}")

"""The report's side of the did-not-learn rule (core/feasibility.py), on hand-made result files.

A search folder (tests/fixtures_results.py) with three completed trials that
learned (0, 1, 2), the fixture's diverged, truncated and failed trials (5, 6,
8), and two that completed but did not learn at margin 0.1: trial 7 (task-IL
diagonal 40, 40, 70 %) and ``COLLAPSED`` (trial 9: 55 % on every task, 0 %
forgetting). Trial 9 is placed where it would be on the front if it were
eligible (it dominates trial 7); the report must keep both off the front, count
them in its header, state the rule, list them with their reason and draw them
with a marker of their own. No training, no Ray; three completed trials keep
the importance step (the slow part of a report) out.
"""
from __future__ import annotations

import html
import json

import numpy as np
import pytest

from analysis.pareto import pareto_table
from analysis.report import INFEASIBLE_MARKER, _draw_pareto, _feasibility_text, _prepare, build_report
from analysis.results import load_search, write_trials_csv
from tests.fixtures_results import COLLAPSED, EVAL_SIZES, TRIALS, trial_id, write_search_fixture
from tests.test_report import _section, _table_column

from core.metrics import summarize

KEPT = (0, 1, 2, 5, 6, 7, 8)
NOT_LEARNED = (7, 9)
REASON_9 = "did not learn: plasticity 55.0% is not 10 points above chance 50.0% (needs >= 60.0%)"
REASON_7 = "did not learn: plasticity 50.0% is not 10 points above chance 50.0% (needs >= 60.0%)"


def _trials() -> list[dict]:
    return [t for t in TRIALS if t["n"] in KEPT] + [COLLAPSED]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = write_search_fixture(tmp_path_factory.mktemp("noLearn") / "search", trials=_trials(),
                             min_plasticity_margin=0.1)
    write_trials_csv(d)
    return d


@pytest.fixture(scope="module")
def report_md(folder) -> str:
    build_report([folder], warn=lambda line: None)
    return (folder / "report.md").read_text()


def test_the_collapsed_fixture_has_the_hand_computed_metrics():
    m = summarize([row[:3] for row in COLLAPSED["R"]], EVAL_SIZES)
    assert m["final_acc"] == pytest.approx(.45) and m["forgetting"] == pytest.approx(0.0)


def test_trials_table_marks_them_infeasible_with_the_reason(folder):
    res = load_search(folder)
    t = res.trials.set_index("trial_id")
    assert [t.loc[trial_id(n), "status"] for n in (0, 1, 2, 5, 6, 7, 8, 9)] == [
        "completed", "completed", "completed", "diverged", "truncated", "infeasible", "error", "infeasible"]
    assert t.loc[trial_id(9), "error"] == REASON_9 and t.loc[trial_id(7), "error"] == REASON_7
    assert int(res.eligible.sum()) == 3 and res.notes == []


def test_without_the_rule_the_collapsed_trial_would_be_on_the_front(folder):
    # The control: were the trials that did not learn eligible, trial 9 (0 % forgetting)
    # would be non-dominated and push trial 7 off the front.
    res = load_search(folder)
    df = res.trials
    table = pareto_table(df, res.objective_columns, eligible=df["status"].isin(["completed", "infeasible"]))
    assert set(table.loc[table["on_front"], "trial_id"]) == {trial_id(n) for n in (0, 1, 2, 9)}


def test_front_table_leaves_out_the_trials_that_did_not_learn(report_md):
    front = _section(report_md, "Pareto front")
    assert _table_column(front, "trial_id") == [trial_id(n) for n in (1, 0, 2)]
    assert "3 of 3 completed trial(s)" in front and "2 more completed but did not learn" in front


def test_header_counts_them_and_states_the_rule_with_its_margin(report_md):
    search = _section(report_md, "Search")
    assert "trials: 8 found of 8 planned — completed 3, did not learn 2, truncated 1, diverged 1, error 1" in search
    assert "is less than 10 points above chance" in search
    assert "min_plasticity_margin 0.1 in search.json" in search


def test_they_are_listed_with_their_reason_apart_from_the_failed_ones(folder, report_md):
    listed = _section(report_md, "Trials that did not learn")
    assert _table_column(listed, "trial_id") == [trial_id(n) for n in NOT_LEARNED]
    assert _table_column(listed, "reason") == [REASON_7, REASON_9]
    assert _table_column(listed, "forgetting %") == ["0.0", "0.0"]
    failed = _section(report_md, "Failed and stopped trials")
    assert _table_column(failed, "trial_id") == [trial_id(n) for n in (5, 6, 8)]
    page = (folder / "report.html").read_text()
    assert "<h2>Trials that did not learn</h2>" in page and html.escape(REASON_9) in page


def test_pareto_plot_draws_them_with_their_own_marker(folder, report_md):
    import matplotlib.pyplot as plt
    from matplotlib.markers import MarkerStyle

    res = load_search(folder)
    fig, notes = _draw_pareto([_prepare(res, res.method)], None, task_il=False)
    try:
        ax = fig.axes[0]
        _, labels = ax.get_legend_handles_labels()
        assert "did not learn (2)" in labels
        groups = {c.get_label(): c for c in ax.collections}
        triangles = groups["did not learn (2)"]
        # (forgetting %, final accuracy %) of trials 7 and 9, and of nothing else
        assert sorted(map(tuple, np.round(triangles.get_offsets(), 6))) == [(0.0, 40.0), (0.0, 45.0)]
        m = MarkerStyle(INFEASIBLE_MARKER)
        assert np.allclose(triangles.get_paths()[0].vertices, m.get_path().transformed(m.get_transform()).vertices)
        face = triangles.get_facecolor()
        assert len(face) == 0 or (face[:, 3] == 0).all()           # open: never mistaken for a front point
        # diverged 5 and truncated 6: in a panel of their own (tests/test_report_plot.py)
        side = [a for a in fig.axes if a.get_label() == "not completed"][0]
        crosses = {c.get_label(): c for c in side.collections}["diverged / error / stopped early / running (2)"]
        assert (0.0, 40.0) not in map(tuple, np.round(crosses.get_offsets(), 6))
        assert any("did not learn" in n for n in notes)
    finally:
        plt.close(fig)
    assert any("did not learn (grey open triangles)" in line for line in
               _section(report_md, "Figures").splitlines())


def test_rule_text_when_off_and_for_a_folder_from_before_the_rule(tmp_path):
    off = write_search_fixture(tmp_path / "off", trials=_trials(), min_plasticity_margin=0.0)
    assert _feasibility_text(load_search(off)).startswith("did-not-learn rule: off (min_plasticity_margin 0 in")
    old = write_search_fixture(tmp_path / "old", trials=_trials(), min_plasticity_margin=None)
    assert "min_plasticity_margin 0.1, the default: search.json predates the rule" in _feasibility_text(load_search(old))


def test_a_folder_from_before_the_rule_still_renders(tmp_path):
    # Written before the rule: trials.csv says "completed" for trial 7, search.json has
    # no margin. Read now, the default margin applies and trial 7 did not learn.
    d = write_search_fixture(tmp_path / "old", trials=[t for t in TRIALS if t["n"] in (0, 1, 2, 7)])
    write_trials_csv(d)
    spec = json.loads((d / "search.json").read_text())
    del spec["min_plasticity_margin"]
    (d / "search.json").write_text(json.dumps(spec))
    build_report([d], warn=lambda line: None)
    md = (d / "report.md").read_text()
    assert "completed 3, did not learn 1" in _section(md, "Search")
    assert _table_column(_section(md, "Pareto front"), "trial_id") == [trial_id(n) for n in (1, 0, 2)]
    assert _table_column(_section(md, "Trials that did not learn"), "trial_id") == [trial_id(7)]
    assert "disagrees" not in md

"""The Pareto plot of the report (analysis/report.py, analysis/figlabels.py), checked on its artists.

Hand-made result folders (tests/fixtures_results.py), no training, no Ray, no
file written but the fixtures: ``_draw_pareto`` returns the figure, and the
tests read what a reader would see -- label texts and their boxes on screen,
legend entries, colour-bar tick labels, which panel a point is drawn in.
"""
from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from analysis.report import _draw_pareto, _prepare
from analysis.results import load_search
from tests.fixtures_results import TRIALS, trial_at, write_search_fixture


def _figure(folder, **kw):
    res = load_search(folder)
    return _draw_pareto([_prepare(res, res.method)], kw.pop("color", None), task_il=False, **kw)


def _panel(fig, name):
    axes = [ax for ax in fig.axes if ax.get_label() == name]
    assert axes, f"no panel {name!r} in {[ax.get_label() for ax in fig.axes]}"
    return axes[0]


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


@pytest.fixture
def closed():
    import matplotlib.pyplot as plt
    figs = []
    yield figs.append
    for fig in figs:
        plt.close(fig)


def test_two_trials_at_one_point_are_both_named(tmp_path, closed):
    trials = [trial_at(0, .70, .20), trial_at(1, .60, .10), trial_at(3, .50, .05), trial_at(7, .50, .05),
              trial_at(4, .40, .30)]
    fig, notes = _figure(write_search_fixture(tmp_path / "same", trials=trials))
    closed(fig)
    texts = _texts(_panel(fig, "trials"))
    both = [t for t in texts if re.search(r"#3\b", t) and re.search(r"#7\b", t)]
    assert both == ["#3, #7"], texts
    assert {"#0", "#1"} <= set(texts)


def test_labels_of_a_crowded_front_do_not_overlap(tmp_path, closed):
    from matplotlib.text import Text

    # 16 front points 0.3 points apart on both axes, one of them twice, and a far
    # point that sets the scale: the labels of neighbours would collide at one fixed offset.
    trials = [trial_at(i, .60 + .003 * i, .10 + .003 * i, {"lr": 0.1, "memory": 50 + 20 * i, "selection": "random"})
              for i in range(16)]
    trials += [trial_at(16, .609, .109), trial_at(17, .20, .40),
               trial_at(18, .90, .01, status="running"), trial_at(19, .91, .0, status="running")]
    fig, notes = _figure(write_search_fixture(tmp_path / "crowd", trials=trials))
    closed(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        frame = ax.get_window_extent(renderer)
        boxes = [(t.get_text(), Text.get_window_extent(t, renderer)) for t in ax.texts]
        for (ta, a), (tb, b) in itertools.combinations(boxes, 2):
            assert not a.overlaps(b), f"{ta!r} overlaps {tb!r}"
        for text, box in boxes:
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, text
    # every front trial is named, in the plot or in the note on the crowded ones
    named = " ".join(_texts(_panel(fig, "trials")) + notes)
    for n in range(16):
        assert re.search(rf"#{n}\b", named), n
    assert re.search(r"#3, #16|#16, #3", named)


def _offsets(ax) -> set[tuple[float, float]]:
    return {tuple(np.round(p, 6)) for c in ax.collections for p in c.get_offsets()}


def test_stopped_early_trials_have_a_panel_of_their_own(tmp_path, closed):
    # The fixture's trial 6 stopped after 2 of 3 tasks (89 %, 2 %) and trial 5 diverged
    # there (94.5 %, 1 %): both better than every completed trial on both axes.
    fig, notes = _figure(write_search_fixture(tmp_path / "s"))
    closed(fig)
    main, side = _panel(fig, "trials"), _panel(fig, "not completed")
    assert (2.0, 89.0) not in _offsets(main) and (1.0, 94.5) not in _offsets(main)
    assert _offsets(side) == {(2.0, 89.0), (1.0, 94.5)}
    assert sorted(_texts(side)) == ["#5 diverged 2/3", "#6 truncated 2/3"]
    assert "partial" in side.get_title() and "never on a front" in side.get_title()
    assert any("right-hand panel" in n and "best corner" in n for n in notes)
    # completed trials only in the main panel: 0, 1, 2, 3, 4, 7
    assert {(10.0, 60.0), (20.0, 70.0), (5.0, 50.0), (15.0, 55.0), (25.0, 65.0), (0.0, 40.0)} <= _offsets(main)


def test_no_second_panel_when_every_trial_completed(tmp_path, closed):
    done = [t for t in TRIALS if t["status"] == "completed"]
    fig, notes = _figure(write_search_fixture(tmp_path / "s", trials=done))
    closed(fig)
    assert [ax.get_label() for ax in fig.axes if ax.get_label() == "not completed"] == []
    assert not any("right-hand panel" in n for n in notes)


def test_memory_colour_bar_has_readable_ticks(tmp_path, closed):
    from analysis.report import _log_ticks

    trials = [trial_at(0, .70, .20, {"lr": 0.1, "memory": 2000, "selection": "random"}),
              trial_at(1, .60, .10, {"lr": 0.1, "memory": 40, "selection": "random"}),
              trial_at(2, .50, .05, {"lr": 0.1, "memory": 300, "selection": "random"})]
    fig, _ = _figure(write_search_fixture(tmp_path / "s", trials=trials))
    closed(fig)
    fig.canvas.draw()
    bar = [ax for ax in fig.axes if "memory budget" in ax.get_ylabel()]
    assert len(bar) == 1 and "log scale" in bar[0].get_ylabel()
    shown = [t.get_text() for t in bar[0].get_yticklabels() if t.get_text()]
    assert shown == ["50", "100", "200", "500", "1000", "2000"]
    minor = [t.get_text() for t in bar[0].yaxis.get_minorticklabels() if t.get_text()]
    assert minor == []                                     # no "6x10^1" between them
    # the rule itself: the ends join when not next to a tick; wide ranges thin out
    assert _log_ticks(40, 2000) == [50, 100, 200, 500, 1000, 2000]
    assert _log_ticks(30, 700) == [30, 50, 100, 200, 500, 700]
    assert len(_log_ticks(1e-6, 1.0)) <= 9


def test_a_one_point_front_has_no_legend_entry_for_a_line(tmp_path, closed):
    from matplotlib.lines import Line2D

    trials = [trial_at(0, .70, .05), trial_at(1, .60, .10), trial_at(2, .50, .20)]   # 0 dominates both
    fig, _ = _figure(write_search_fixture(tmp_path / "s", trials=trials))
    closed(fig)
    main = _panel(fig, "trials")
    handles, labels = main.get_legend_handles_labels()
    front = [(h, lab) for h, lab in zip(handles, labels) if "front" in lab.lower()]
    assert [lab for _, lab in front] == ["Pareto front (circled; one trial)"]
    assert not isinstance(front[0][0], Line2D)                 # the ring, not a line
    for h, lab in zip(handles, labels):
        if isinstance(h, Line2D) and h.get_linestyle() not in ("None", "none", ""):
            assert len(h.get_xdata()) > 1, lab                 # every line in the legend is drawn
    assert _texts(main) == ["#0"]


def test_a_front_of_several_points_keeps_its_staircase(tmp_path, closed):
    from matplotlib.lines import Line2D

    fig, _ = _figure(write_search_fixture(tmp_path / "s"))
    closed(fig)
    handles, labels = _panel(fig, "trials").get_legend_handles_labels()
    line = handles[labels.index("Pareto front")]
    assert isinstance(line, Line2D) and len(line.get_xdata()) == 4


def test_finetune_and_joint_of_the_rerun_are_reference_points(tmp_path, closed):
    from matplotlib.markers import MarkerStyle

    from analysis.report import REFERENCE_MARKERS
    from tests.fixtures_results import write_rerun_fixture

    folder = write_search_fixture(tmp_path / "s")
    write_rerun_fixture(folder)
    fig, notes = _figure(folder)
    closed(fig)
    main = _panel(fig, "trials")
    handles, labels = main.get_legend_handles_labels()
    refs = {lab.split(":")[0]: h for h, lab in zip(handles, labels) if "a reference, not a trial" in lab}
    assert set(refs) == {"finetune", "joint"}
    assert all("test split, mean of 2 seed(s)" in lab for lab in labels if "a reference" in lab)
    # mean of seeds 0 and 1: (forgetting %, final accuracy %)
    assert [tuple(np.round(p, 6)) for p in refs["finetune"].get_offsets()] == [(60.5, 30.5)]
    assert [tuple(np.round(p, 6)) for p in refs["joint"].get_offsets()] == [(2.5, 85.5)]
    for method, h in refs.items():                    # REFERENCE_MARKERS: a white diamond, a black star
        m = MarkerStyle(REFERENCE_MARKERS[method][0])
        assert np.allclose(h.get_paths()[0].vertices, m.get_path().transformed(m.get_transform()).vertices)
    assert refs["joint"].get_facecolor()[0][:3].tolist() == [0, 0, 0]
    assert refs["finetune"].get_facecolor()[0][:3].tolist() == [1, 1, 1]
    assert {"finetune (test)", "joint (test)"} <= set(_texts(main))
    assert any("test split after training on train + validation" in n and "not points of a front" in n
               for n in notes)


def test_no_reference_points_without_a_rerun(tmp_path, closed):
    fig, notes = _figure(write_search_fixture(tmp_path / "s"))
    closed(fig)
    _, labels = _panel(fig, "trials").get_legend_handles_labels()
    assert not any("reference" in lab for lab in labels) and not any("finetune" in n for n in notes)

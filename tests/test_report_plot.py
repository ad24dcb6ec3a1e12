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

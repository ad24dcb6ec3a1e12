"""Results folder reading (analysis/results.py) and the Pareto report (analysis/report.py).

Everything runs on hand-made result files (tests/fixtures_results.py): no
training, no Ray. The expected front is computed by hand in the fixture's
docstring: trials 1, 0, 2, 7; the diverged trial 5 and the truncated trial 6
would dominate all of them if they were eligible.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core.metrics import SUMMARY_KEYS, summarize
from analysis.report import build_report
from analysis.results import (ResultsError, SearchResults, load_search, result_matrix, trial_number,
                              trials_frame_from_results, write_trials_csv)
from tests.fixtures_results import (EXPECTED_FRONT_NUMBERS, EXPECTED_STATUS, EVAL_SIZES, TRIALS, expected_front,
                                    trial_at, trial_id, write_search_fixture)

REPO = Path(__file__).resolve().parent.parent
REPORT_SCRIPT = REPO / "analysis" / "report.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def _section(md: str, heading: str) -> str:
    """Text of a '## heading' section of report.md, up to the next '## '."""
    m = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", md, flags=re.S | re.M)
    assert m, f"no section {heading!r} in report.md"
    return m.group(1)


def _table_column(text: str, column: str) -> list[str]:
    """Values of one column of every markdown table in ``text`` that has it, in order."""
    values: list[str] = []
    header: list[str] | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif set(line) <= set("|-"):
            continue
        elif column in header:
            values.append(cells[header.index(column)])
    return values


def _front_ids(md: str, subsection: str | None = None) -> list[str]:
    text = _section(md, "Pareto front")
    if subsection is not None:
        m = re.search(rf"^### {re.escape(subsection)}\n(.*?)(?=^### |\Z)", text, flags=re.S | re.M)
        assert m, f"no subsection {subsection!r} under Pareto front"
        text = m.group(1)
    return _table_column(text, "trial_id")


def _assert_png(path: Path) -> None:
    assert path.is_file(), f"{path.name} missing"
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000, f"{path.name} is not a real PNG"


# --------------------------------------------------------------------------
# fixtures (built once per module: the report is the slow part)
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def icarl_dir(tmp_path_factory) -> Path:
    d = write_search_fixture(tmp_path_factory.mktemp("icarl") / "search")
    write_trials_csv(d)
    return d


@pytest.fixture(scope="module")
def icarl_report(icarl_dir) -> Path:
    return build_report([icarl_dir])


# --------------------------------------------------------------------------
# the fixture itself
# --------------------------------------------------------------------------

def test_fixture_matrices_have_the_hand_computed_metrics():
    for t in TRIALS:
        if not t["R"]:
            continue
        k = len(t["R"])
        m = summarize([row[:k] for row in t["R"]], EVAL_SIZES[:k])
        assert m["final_acc"] == pytest.approx(t["final"]), t["n"]
        assert m["forgetting"] == pytest.approx(t["forgetting"]), t["n"]


# --------------------------------------------------------------------------
# results.py: trials.csv
# --------------------------------------------------------------------------

def test_trials_csv_columns_status_and_values(icarl_dir):
    df = pd.read_csv(icarl_dir / "trials.csv", dtype={"trial_id": str})
    expected_cols = (["trial_number", "trial_id", "method", "status", "error", "param.lr", "param.memory",
                      "param.selection", "param.weight_decay"] + list(SUMMARY_KEYS)
                     + [f"task_il.{k}" for k in SUMMARY_KEYS]
                     + ["memory", "num_params", "tasks_done", "wall_time_s", "started_at", "seed", "confirms"])
    assert list(df.columns) == expected_cols
    assert list(df["trial_id"]) == [trial_id(t["n"]) for t in TRIALS]
    # Records from before trial numbers: the number of Ray's id ("a1b2c_00004" -> 4), rows in that order.
    assert list(df["trial_number"]) == [t["n"] for t in TRIALS]
    by_id = df.set_index("trial_id")
    for n, status in EXPECTED_STATUS.items():
        assert by_id.loc[trial_id(n), "status"] == status, n
    assert (df["method"] == "icarl").all()
    # hand-computed class-IL metrics (fixture table)
    for t in TRIALS:
        row = by_id.loc[trial_id(t["n"])]
        if t["final"] is None:
            assert math.isnan(row["final_acc"]) and math.isnan(row["forgetting"])
        else:
            assert row["final_acc"] == pytest.approx(t["final"])
            assert row["forgetting"] == pytest.approx(t["forgetting"])
        assert row["param.lr"] == pytest.approx(t["params"]["lr"])
        assert row["param.memory"] == t["params"]["memory"]
        assert row["param.selection"] == t["params"]["selection"]
        assert row["param.weight_decay"] == pytest.approx(1e-5)
    t0 = by_id.loc[trial_id(0)]
    # trial 0: R = [[.6], [.55, .6], [.5, .5, .8]], eval sizes 100/60/40
    assert t0["bwt"] == pytest.approx(-0.10)
    assert t0["plasticity"] == pytest.approx((0.6 + 0.6 + 0.8) / 3)
    assert t0["final_acc_pooled"] == pytest.approx((0.5 * 100 + 0.5 * 60 + 0.8 * 40) / 200)
    assert t0["avg_inc_acc"] == pytest.approx((0.6 + (0.55 * 100 + 0.6 * 60) / 160 + 0.56) / 3)
    # task-IL matrix = class-IL + 0.1: final (.6 + .6 + .9) / 3
    assert t0["task_il.final_acc"] == pytest.approx(0.7)
    assert t0["memory"] == 200 and t0["tasks_done"] == 3 and t0["wall_time_s"] == pytest.approx(30.0)
    # failed and stopped trials keep their reason
    assert by_id.loc[trial_id(5), "error"] == "loss became nan in task 2 epoch 0"
    assert by_id.loc[trial_id(8), "error"] == "RuntimeError: CUDA out of memory"
    assert by_id.loc[trial_id(6), "tasks_done"] == 2
    assert "2 of 3" in by_id.loc[trial_id(6), "error"]
    assert pd.isna(by_id.loc[trial_id(8), "memory"]) and by_id.loc[trial_id(8), "tasks_done"] == 0
    assert pd.isna(by_id.loc[trial_id(0), "error"])


def test_trials_csv_is_written_atomically(icarl_dir):
    write_trials_csv(icarl_dir)
    leftovers = [p.name for p in icarl_dir.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert (icarl_dir / "trials.csv").stat().st_mode & 0o044  # not a private mkstemp file


def test_running_trials_are_marked_running_not_truncated(icarl_dir):
    df = trials_frame_from_results(icarl_dir, running=[trial_id(6)])
    assert df.set_index("trial_id").loc[trial_id(6), "status"] == "running"


def test_task_il_only_method_has_empty_class_il_columns(tmp_path):
    d = write_search_fixture(tmp_path / "pack", method="packnet", task_incremental_only=True)
    df = trials_frame_from_results(d).set_index("trial_id")
    assert df["final_acc"].isna().all()
    assert df.loc[trial_id(1), "task_il.final_acc"] == pytest.approx(0.70)
    assert df.loc[trial_id(1), "task_il.forgetting"] == pytest.approx(0.20)
    assert "param.prune_ratio" in df.columns


def test_result_matrix_squares_a_truncated_trial(icarl_dir):
    res = load_search(icarl_dir)
    M = result_matrix(res.result(trial_id(6)))
    assert M.shape == (2, 2) and M[1, 0] == pytest.approx(0.88)
    assert result_matrix(res.result(trial_id(8))) is None


def test_trial_number_is_the_recorded_one_else_ray_ids_suffix():
    assert trial_number({"trial_number": 7}, "a1b2c_00012") == 7
    assert trial_number({}, "a1b2c_00012") == 12  # a record from before trial numbers
    assert trial_number({}, "local") is None
    assert trial_number({"trial_number": -1}, "d22e530e") is None  # check_result refuses it as a bad record


# --------------------------------------------------------------------------
# results.py: load_search and its errors
# --------------------------------------------------------------------------

def test_load_search(icarl_dir):
    res = load_search(icarl_dir)
    assert isinstance(res, SearchResults)
    assert res.path == icarl_dir.resolve()
    assert res.spec["method"] == "icarl" and res.method == "icarl"
    assert res.objectives == [("final_acc", "max"), ("forgetting", "min")]
    assert len(res.trials) == len(TRIALS)
    assert int(res.eligible.sum()) == 6
    d = res.result(trial_id(1))
    assert d["trial_id"] == trial_id(1) and d["params"]["memory"] == 2000
    assert res.result(trial_id(1)) is d  # cached
    with pytest.raises(ResultsError, match="no result file"):
        res.result("nope_00099")


def test_load_search_without_trials_csv_builds_the_table(tmp_path):
    d = write_search_fixture(tmp_path / "s")
    res = load_search(d)
    assert list(res.trials["status"]) == [EXPECTED_STATUS[t["n"]] for t in TRIALS]


def _bad_folder(tmp_path: Path, kind: str) -> Path:
    d = tmp_path / "bad"
    if kind == "missing":
        return d
    d.mkdir()
    if kind == "empty":
        return d
    if kind == "no_search_json":
        (d / "notes.txt").write_text("x")
        return d
    if kind == "other_format":
        (d / "search.json").write_text(json.dumps({"format": "clsearch-search/99", "objectives": []}))
        return d
    if kind == "corrupt_search_json":
        (d / "search.json").write_text("{not json")
        return d
    write_search_fixture(d)
    if kind == "no_trials":
        import shutil
        shutil.rmtree(d / "trials")
        return d
    if kind == "corrupt_result":
        (d / "trials" / trial_id(3) / "result.json").write_text('{"format": "clsearch-result/1", ')
        return d
    if kind == "empty_csv":
        import shutil
        shutil.rmtree(d / "trials")
        (d / "trials.csv").write_text("")
        return d
    raise AssertionError(kind)


@pytest.mark.parametrize("kind, message", [
    ("missing", "does not exist"),
    ("empty", "is empty"),
    ("no_search_json", "has no search.json"),
    ("other_format", "clsearch-search/99"),
    ("corrupt_search_json", "search.json is not valid JSON"),
    ("no_trials", "no trials"),
    ("empty_csv", "no trials"),
])
def test_load_search_errors_are_one_line(tmp_path, kind, message):
    d = _bad_folder(tmp_path, kind)
    with pytest.raises(ResultsError) as info:
        load_search(d)
    text = str(info.value)
    assert message in text and "\n" not in text
    assert isinstance(info.value, ValueError)


def test_a_corrupt_result_is_excluded_not_fatal(tmp_path):
    """One unreadable result.json no longer blocks the folder: its trial is
    excluded, named with its file and the reason (tests/test_report_records.py
    has every kind of bad record)."""
    d = _bad_folder(tmp_path, "corrupt_result")
    res = load_search(d)
    row = res.trials.set_index("trial_id").loc[trial_id(3)]
    assert row["status"] == "excluded"
    assert row["error"].startswith(f"bad record: trials/{trial_id(3)}/result.json: is not valid JSON")
    assert int(res.eligible.sum()) == 5 and res.exclusion_counts() == {"bad record": 1}


# --------------------------------------------------------------------------
# report.py: one search
# --------------------------------------------------------------------------

def test_report_files(icarl_dir, icarl_report):
    assert icarl_report == icarl_dir / "report.html"
    for name in ("pareto.png", "front_curves.png", "front_matrices.png", "importance.png"):
        _assert_png(icarl_dir / name)
    assert not (icarl_dir / "pareto_task_il.png").exists()
    assert (icarl_dir / "report.md").stat().st_size > 500


def test_report_front_is_the_hand_computed_one(icarl_dir, icarl_report):
    md = (icarl_dir / "report.md").read_text()
    assert _front_ids(md) == expected_front()          # 1, 0, 2, 7: best final accuracy first
    front = set(_front_ids(md))
    assert trial_id(5) not in front                    # diverged, would dominate everything
    assert trial_id(6) not in front                    # truncated after 2 of 3 tasks
    assert trial_id(3) not in front and trial_id(4) not in front
    # the table shows percentages: trial 1 has 70 % final accuracy and 20 % forgetting
    section = _section(md, "Pareto front")
    assert _table_column(section, "final acc %")[0] == "70.0"
    assert _table_column(section, "forgetting %")[0] == "20.0"
    assert _table_column(section, "#") == [str(n) for n in EXPECTED_FRONT_NUMBERS]


def test_report_lists_failed_trials_with_errors(icarl_dir, icarl_report):
    md = (icarl_dir / "report.md").read_text()
    failed = _section(md, "Failed and stopped trials")
    assert _table_column(failed, "trial_id") == [trial_id(5), trial_id(6), trial_id(8)]
    assert "loss became nan in task 2 epoch 0" in failed
    assert "RuntimeError: CUDA out of memory" in failed
    assert "stopped after 2 of 3 tasks" in failed


def test_report_spec_summary_and_importance(icarl_dir, icarl_report):
    md = (icarl_dir / "report.md").read_text()
    spec = _section(md, "Search")
    assert "icarl" in spec and "synthetic" in spec and "tasks 3" in spec
    assert "completed 6, truncated 1, diverged 1, error 1" in spec
    imp = _section(md, "Parameter importance")
    # one view of the numbers: the figure, with the values on its bars; no table repeating them
    assert "](importance.png)" in imp and "|" not in imp
    assert "importance.png" not in _section(md, "Figures")


def test_importance_figure_carries_the_values(icarl_dir):
    import matplotlib.pyplot as plt

    from analysis.report import _draw_importance, _importance, _prepare

    s = _prepare(load_search(icarl_dir), "icarl")
    imp, _ = _importance(s)
    fig = _draw_importance([(s, imp)])
    try:
        titles = [ax.get_title() for ax in fig.axes]
        assert titles == ["icarl: final accuracy (macro) (max)", "icarl: average forgetting (min)"]
        for ax in fig.axes:
            names = [t.get_text() for t in ax.get_yticklabels()]
            assert sorted(names) == ["lr", "memory", "selection"]
            widths = [p.get_width() for p in ax.patches]
            assert sum(widths) == pytest.approx(100, abs=0.5)
            values = [t.get_text() for t in ax.texts]          # bar_label: one value per bar, as printed
            assert values == [f"{w:.1f}" for w in widths]
    finally:
        plt.close(fig)


def test_report_html_is_self_contained(icarl_dir, icarl_report):
    text = icarl_report.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert text.count("data:image/png;base64,") == 4
    assert 'src="pareto.png"' not in text and "<table>" in text
    assert trial_id(1) in text


@pytest.mark.slow  # a full report: ~7 s of CPU
def test_three_objectives_front(tmp_path):
    d = write_search_fixture(tmp_path / "s3", objectives=[["final_acc", "max"], ["forgetting", "min"],
                                                          ["memory", "min"]])
    build_report([d])
    md = (d / "report.md").read_text()
    # with memory as a third objective, 3 (100 exemplars) and 4 (500) are no longer dominated
    assert set(_front_ids(md)) == {trial_id(n) for n in (0, 1, 2, 3, 4, 7)}
    _assert_png(d / "pareto.png")


def test_importance_falls_back_with_few_trials(tmp_path):
    few = [t for t in TRIALS if t["n"] in (0, 1, 2, 5)]        # 3 completed
    d = write_search_fixture(tmp_path / "few", trials=few)
    build_report([d])
    md = (d / "report.md").read_text()
    assert "only 3 completed trial(s)" in _section(md, "Parameter importance")
    assert not (d / "importance.png").exists()
    assert _front_ids(md) == [trial_id(1), trial_id(0), trial_id(2)]


# --------------------------------------------------------------------------
# report.py: comparisons and task-IL methods
# --------------------------------------------------------------------------

@pytest.mark.slow  # a report of three searches: ~9 s of CPU
def test_comparison_of_methods_with_a_task_il_one(tmp_path):
    a = write_search_fixture(tmp_path / "icarl", method="icarl", prefix="aaaaa")
    b = write_search_fixture(tmp_path / "replay", method="replay", prefix="bbbbb")
    p = write_search_fixture(tmp_path / "packnet", method="packnet", task_incremental_only=True, prefix="ppppp")
    out = build_report([a, b, p])
    assert out.parent.parent == tmp_path and out.parent.name.startswith("compare-icarl-replay-packnet-")
    for name in ("pareto.png", "pareto_task_il.png", "front_curves.png", "front_matrices.png", "importance.png"):
        _assert_png(out.parent / name)
    md = (out.parent / "report.md").read_text()
    # each method has its own front; packnet's (task-IL metrics) is never merged with the others
    assert _front_ids(md, "icarl") == expected_front("aaaaa")
    assert _front_ids(md, "replay") == expected_front("bbbbb")
    assert _front_ids(md, "packnet") == expected_front("ppppp")
    assert "8 of them" in md   # 12 front configs, curves capped at 8
    html_text = out.read_text()
    assert html_text.count("data:image/png;base64,") == 5


@pytest.mark.slow  # a report of two searches: ~4 s of CPU
def test_task_il_only_search_goes_on_its_own_figure(tmp_path):
    p = write_search_fixture(tmp_path / "packnet", method="packnet", task_incremental_only=True)
    build_report([p], out_dir=tmp_path / "out", color="prune_ratio")
    _assert_png(tmp_path / "out" / "pareto_task_il.png")
    assert not (tmp_path / "out" / "pareto.png").exists()
    md = (tmp_path / "out" / "report.md").read_text()
    assert _front_ids(md) == expected_front()
    # task-IL numbers: trial 1's task-IL final accuracy is 70 % in the PackNet fixture
    assert _table_column(_section(md, "Pareto front"), "final acc %")[0] == "70.0"


def test_unknown_color_parameter(icarl_dir, tmp_path):
    with pytest.raises(ResultsError, match="--color 'nope'"):
        build_report([icarl_dir], out_dir=tmp_path / "o", color="nope")


# --------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------

def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPORT_SCRIPT), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("kind, message", [
    ("missing", "does not exist"),
    ("no_search_json", "has no search.json"),
    ("other_format", "clsearch-search/99"),
    ("no_trials", "no trials"),
])
@pytest.mark.slow  # subprocess: analysis/report.py
def test_cli_errors_are_one_line_exit_2(tmp_path, kind, message):
    d = _bad_folder(tmp_path, kind)
    proc = _cli([str(d)], cwd=tmp_path)        # run from elsewhere: the script finds the project itself
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.slow  # subprocess: analysis/report.py
def test_cli_writes_the_report_and_prints_its_path(tmp_path):
    # a small folder (3 completed trials: no importance step) keeps this subprocess quick
    d = write_search_fixture(tmp_path / "small", trials=[t for t in TRIALS if t["n"] in (0, 1, 2, 5, 8)])
    out = tmp_path / "cli-out"
    proc = _cli([str(d), "--out", str(out), "--color", "lr"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out / "report.html")
    _assert_png(out / "pareto.png")
    assert "data:image/png;base64," in (out / "report.html").read_text()


def test_report_names_each_tasks_classes(tmp_path):
    """The report says what each task was about: the class names a trial's
    stream recorded (an image folder's class folders, GTSRB's signs), else the ids."""
    folder = write_search_fixture(tmp_path / "named")
    build_report([folder])
    assert "- classes per task: task 1: 0, 1; task 2: 2, 3; task 3: 4, 5" in (folder / "report.md").read_text()
    names = [["cat", "dog"], ["ship", "truck"], ["frog", "horse"]]
    for f in (folder / "trials").glob("*/result.json"):
        d = json.loads(f.read_text())
        if d.get("stream", {}).get("task_classes"):
            d["stream"]["task_class_names"] = names
            f.write_text(json.dumps(d))
    build_report([folder])
    md = (folder / "report.md").read_text()
    assert "- classes per task: task 1: cat, dog; task 2: ship, truck; task 3: frog, horse" in md
    assert "task 1: cat, dog" in (folder / "report.html").read_text()


def test_report_has_a_sortable_table_of_all_trials(icarl_dir, icarl_report):
    md = (icarl_dir / "report.md").read_text()
    table = _section(md, "All trials")
    assert _table_column(table, "#") == [str(t["n"]) for t in TRIALS]
    assert _table_column(table, "status") == [EXPECTED_STATUS[t["n"]] for t in TRIALS]
    assert _table_column(table, "final acc %")[:2] == ["60.0", "70.0"]
    assert _table_column(table, "forgetting %")[5] == "1.0"            # diverged 5: partial, listed as is
    assert _table_column(table, "tasks done")[6] == "2"
    assert _table_column(table, "memory") == [str(t["params"]["memory"]) for t in TRIALS]
    page = icarl_report.read_text()
    # the html tables are sortable by an inline script: nothing loaded from elsewhere
    assert page.count('<table class="sortable">') == 2          # the front and all trials
    assert "<script>" in page and "aria-sort" in page and "<script src" not in page
    heads = re.findall(r'<table class="sortable"><thead><tr>(.*?)</tr>', page)[-1]       # all trials: the last
    assert re.findall(r"<th>(.*?)</th>", heads)[:4] == ["#", "trial_id", "status", "tasks done"]


def test_report_includes_the_reruns_final_table(tmp_path):
    from tests.fixtures_results import write_rerun_fixture

    d = write_search_fixture(tmp_path / "s", trials=[t for t in TRIALS if t["n"] in (0, 1, 2, 5)])
    build_report([d])
    assert "## Final table" not in (d / "report.md").read_text()      # no rerun yet: no section
    md_path = write_rerun_fixture(d, picked=(1, 0))
    build_report([d])
    md = (d / "report.md").read_text()
    final = _section(md, "Final table (rerun)")
    assert _table_column(final, "config") == [f"icarl #1 ({trial_id(1)})", f"icarl #0 ({trial_id(0)})",
                                              "finetune", "joint"]
    assert _table_column(final, "final acc %")[2:] == ["30.50 ± 0.71", "85.50 ± 0.71"]
    assert "Final table: icarl" in final and "- seeds: [0, 1]" in final
    assert f"[final_table.md ({md_path})](final_table.md)" in final
    page = (d / "report.html").read_text()
    assert '<a href="final_table.md">' in page and "85.50 ± 0.71" in page
    assert "(a reference, not a trial)" not in md                    # the legend is in the figure, not the text
    assert "finetune (white diamond) and joint (black star) are the rerun's means" in _section(md, "Figures")


def test_an_unreadable_final_table_is_said_not_fatal(tmp_path):
    d = write_search_fixture(tmp_path / "s", trials=[t for t in TRIALS if t["n"] in (0, 1, 2)])
    (d / "final_table.csv").write_text("config,seeds\nx,1\n")
    build_report([d])
    final = _section((d / "report.md").read_text(), "Final table (rerun)")
    assert "Not shown:" in final and "not a final table of this version" in final


# Two small class-IL searches (3 completed trials each: no importance step) with the
# same trial numbers. icarl's front (final, forgetting): (.70, .20), (.60, .10), (.50, .05);
# der's: (.75, .30), (.45, .02), its trial 2 (.30, .50) dominated. Hypervolumes against
# (accuracy 0, forgetting 1), by hand, in the (accuracy, 1 - forgetting) plane:
#   icarl    .70 * .80 + .60 * .10 + .50 * .05                           = .6450
#   der      .75 * .70 + .45 * .28                                       = .6510
#   combined .75 * .70 + .70 * .10 + .60 * .10 + .50 * .05 + .45 * .03   = .6935
DER_TRIALS = [trial_at(0, .75, .30), trial_at(1, .45, .02), trial_at(2, .30, .50)]


@pytest.fixture(scope="module")
def two_searches(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    a = write_search_fixture(root / "icarl-x", method="icarl", trials=[t for t in TRIALS if t["n"] in (0, 1, 2, 5)])
    b = write_search_fixture(root / "der-x", method="der", trials=DER_TRIALS, prefix="ddddd")
    first = build_report([a, b])
    return root, a, b, first


def test_comparison_goes_to_its_own_folder_and_a_second_one_does_not_overwrite_it(two_searches):
    root, a, b, first = two_searches
    assert re.fullmatch(r"compare-icarl-der-\d{8}-\d{6}(-\d+)?", first.parent.name), first
    assert first.parent.parent == root                      # beside the searches, inside neither
    assert not (a / "comparison").exists() and not (a / "report.md").exists() and not (b / "report.md").exists()
    before = first.read_bytes()
    second = build_report([a, b])
    assert second.parent != first.parent and second.parent.parent == root
    assert first.read_bytes() == before                     # the first comparison is untouched


def test_comparison_names_trials_across_searches(two_searches):
    from analysis.report import _draw_pareto, _prepare

    _, a, b, _ = two_searches
    searches = [_prepare(load_search(a), "icarl"), _prepare(load_search(b), "der")]
    fig, _ = _draw_pareto(searches, None, task_il=False)
    try:
        ax = [x for x in fig.axes if x.get_label() == "trials"][0]
        texts = [t.get_text() for t in ax.texts]
        assert {"icarl#0", "icarl#1", "icarl#2", "der#0", "der#1"} <= set(texts)
        assert not any(re.match(r"#\d", t) for t in texts)   # no bare "#1", which both searches have
        side = [x for x in fig.axes if x.get_label() == "not completed"][0]
        assert [t.get_text() for t in side.texts] == ["icarl#5 diverged 2/3"]
        handles, labels = ax.get_legend_handles_labels()
        combined = handles[labels.index("combined front of the class-IL methods (5 trials)")]
        assert list(combined.get_xdata()) == pytest.approx([2, 5, 10, 20, 30])
        assert list(combined.get_ydata()) == pytest.approx([45, 50, 60, 70, 75])
    finally:
        import matplotlib.pyplot as plt
        plt.close(fig)


def test_comparison_has_a_combined_front_and_hypervolumes(two_searches):
    _, _, _, first = two_searches
    md = (first.parent / "report.md").read_text()
    front = _section(md, "Pareto front")
    m = re.search(r"^### Combined front, class-incremental\n(.*?)(?=^### )", front, flags=re.S | re.M)
    assert m, front
    assert _table_column(m.group(1), "trial") == ["der#0", "icarl#1", "icarl#0", "icarl#2", "der#1"]
    assert "5 of 6 completed trial(s) of icarl, der are non-dominated" in m.group(1)
    m = re.search(r"^### Hypervolume, class-incremental\n(.*?)(?=^### )", front, flags=re.S | re.M)
    hv = m.group(1)
    assert _table_column(hv, "front of") == ["icarl", "der", "combined"]
    assert _table_column(hv, "hypervolume") == ["0.6450", "0.6510", "0.6935"]
    assert _table_column(hv, "on the combined front") == ["3", "2", "5"]
    assert "final accuracy (macro) 0.0 %, average forgetting 100.0 %" in hv
    # each method's own front is still there, by its trial ids
    assert _front_ids(md, "icarl") == [trial_id(n) for n in (1, 0, 2)]
    assert _front_ids(md, "der") == [trial_id(0, "ddddd"), trial_id(1, "ddddd")]
    # the table of all trials has one row per trial of both, with the method
    everyone = _section(md, "All trials")
    assert _table_column(everyone, "method") == ["icarl"] * 4 + ["der"] * 3


def test_single_search_front_states_its_hypervolume(icarl_dir, icarl_report):
    # the fixture's front 1, 0, 2, 7: .70 * .80 + .60 * .10 + .50 * .05 + .40 * .05 = .665
    front = _section((icarl_dir / "report.md").read_text(), "Pareto front")
    assert "Hypervolume of the front: 0.6650 (hypervolume reference: final accuracy (macro) 0.0 %, " \
           "average forgetting 100.0 %)" in front


def test_every_html_table_scrolls_in_its_own_box(icarl_report):
    """A wide table (the front's) must not push the page past a narrow window:
    each sits in a box that scrolls sideways (bench/report_browser_check.py
    checks the rendered page at 820 px)."""
    page = icarl_report.read_text()
    assert page.count("<table") == page.count('<div class="scroll"><table') > 0
    assert ".scroll{overflow-x:auto;max-width:100%}" in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page


def test_cli_comparison_locks_its_own_folder_and_leaves_no_lock(two_searches, capsys):
    from analysis.report import main
    from core.lock import LOCK_NAME, FolderLock

    root, a, b, _ = two_searches
    with FolderLock(a, "search"):                  # a search still writing the first folder: no matter
        assert main([str(a), str(b)]) == 0
    out = Path(capsys.readouterr().out.strip())
    assert out.name == "report.html" and out.parent.parent == root and out.parent.name.startswith("compare-")
    assert not (out.parent / LOCK_NAME).exists() and not (a / LOCK_NAME).exists()
    with FolderLock(a, "search"):                  # but a single-search report into it is refused
        assert main([str(a)]) == 2
    assert "in use by another process" in capsys.readouterr().err
    assert not (a / "report.html").exists()

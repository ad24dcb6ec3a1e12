"""Hostile records and failed builds of the report, table-driven (analysis/results.py, analysis/report.py).

Two tables, both run in-process through ``analysis.report.main`` (no Ray, no
training; hand-made folders from tests/fixtures_results.py):

``RECORD_CASES``: one result.json (or trials.csv row) is broken in one way. The
report must still be built (exit 0) and print exactly ONE stderr line,
``warning: ...``, naming the trial and its file and saying what is wrong. A
bad record is excluded: not on the front (trial 1, the true best by final
accuracy, is on the front of the intact folder), counted apart in the header
("excluded 1 (bad record)") and listed under "Records not trusted". Where
trials.csv disagrees with a sound result.json the trial is kept with
result.json's numbers and the disagreement is the warning.

``FAILURE_CASES``: a report already exists; the new build fails (an unknown
--color, an unknown search-space type, a full disk partway through, a bug
partway through). Each must exit 2 with one ``error:`` line (the bug: raise),
and leave the folder exactly as it was -- every path, its sha256 and its
mtime -- with no temporary build folder left behind.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

import analysis.report as report
from analysis.results import load_search, write_trials_csv
from tests.fixtures_results import TRIALS, trial_id, write_search_fixture

REPO = Path(__file__).resolve().parent.parent

# Trials 0, 1, 2 completed (front 1, 0, 2: trial 1 has the best final accuracy),
# 5 diverged, 6 truncated, 8 error. Three completed trials keep the importance
# step (4 needed) out of the record rows: they test records, not fANOVA.
SMALL = [t for t in TRIALS if t["n"] in (0, 1, 2, 5, 6, 8)]
INTACT_FRONT = [trial_id(1), trial_id(0), trial_id(2)]


# --------------------------------------------------------------------------
# breakages
# --------------------------------------------------------------------------

def _result_file(root: Path, n: int) -> Path:
    return root / "trials" / trial_id(n) / "result.json"


def edit(n: int, change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    """Rewrite trial n's result.json after ``change(record)``; json.dumps keeps
    NaN and inf as the NaN / Infinity literals Python's json reads back."""
    def apply(root: Path) -> None:
        f = _result_file(root, n)
        d = json.loads(f.read_text())
        change(d)
        f.write_text(json.dumps(d, indent=1))
    return apply


def raw(n: int, text: Callable[[str], str]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        f = _result_file(root, n)
        f.write_text(text(f.read_text()))
    return apply


def csv_cell(n: int, column: str, value: str) -> Callable[[Path], None]:
    """Replace one cell of trial n's trials.csv row (text level, as an editor would)."""
    def apply(root: Path) -> None:
        f = root / "trials.csv"
        lines = f.read_text().splitlines()
        header = lines[0].split(",")
        for i, line in enumerate(lines):
            cells = line.split(",")
            if cells[header.index("trial_id")] == trial_id(n):  # not the first column since trial_number
                cells[header.index(column)] = value
                lines[i] = ",".join(cells)
        f.write_text("\n".join(lines) + "\n")
    return apply


def remove_folder(n: int) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        shutil.rmtree(root / "trials" / trial_id(n))
    return apply


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets d[a][b]... (keys and list indices split on '.')."""
    def change(d: dict[str, Any]) -> None:
        *head, last = path.split(".")
        for key in head:
            d = d[int(key)] if isinstance(d, list) else d[key]
        if isinstance(d, list):
            d[int(last)] = value
        else:
            d[last] = value
    return change


@dataclass
class RecordCase:
    id: str
    breakage: Callable[[Path], None]
    message: str                 # in the one stderr line (and in report.md)
    n: int = 1                   # the trial named
    excluded: bool = True        # False: kept with result.json's numbers (a trials.csv disagreement)
    kind: str = "bad record"
    csv: bool = False            # write trials.csv (as the driver does) before the breakage
    file: str = "result.json"    # what the message names, under trials/<id>/


RECORD_CASES = [
    # the hostile user's list
    RecordCase("final_acc 1e308", edit(1, _set("metrics.class_il.final_acc", 1e308)),
               "metrics.class_il.final_acc = 1e+308 is outside [0, 1]"),
    RecordCase("inf on the true best trial", edit(1, _set("metrics.class_il.forgetting", float("inf"))),
               "metrics.class_il.forgetting = inf is not finite"),
    RecordCase("NaN metric (literal)", edit(1, _set("metrics.class_il.final_acc", float("nan"))),
               "metrics.class_il.final_acc = nan is not finite"),
    RecordCase("NaN metric (null, as core.result writes it)", edit(1, _set("metrics.class_il.forgetting", None)),
               "metrics.class_il.forgetting is null"),
    RecordCase("string metric, no trials.csv", edit(1, _set("metrics.class_il.final_acc", "0.7")),
               "metrics.class_il.final_acc is '0.7' (a string), not a number"),
    RecordCase("result.json is []", raw(1, lambda _: "[]"), "holds a JSON list, not an object"),
    RecordCase("result.json truncated", raw(1, lambda t: t[: len(t) // 2]),
               "is not valid JSON (line"),
    RecordCase("result.json empty", raw(1, lambda _: ""), "is not valid JSON (the file is empty)"),
    RecordCase("trial folder named by trials.csv is missing", remove_folder(1),
               "trials.csv names this trial but its folder is missing", kind="missing record", csv=True, file=""),
    # accuracies in [0, 1]
    RecordCase("matrix entry as a percentage", edit(1, _set("acc_class_il.2.0", 60.0)),
               "acc_class_il[2][0] = 60 is outside [0, 1]"),
    RecordCase("negative task-IL entry", edit(1, _set("acc_task_il.1.1", -0.2)),
               "acc_task_il[1][1] = -0.2 is outside [0, 1]"),
    RecordCase("metric accuracy above 1", edit(1, _set("metrics.task_il.plasticity", 1.5)),
               "metrics.task_il.plasticity = 1.5 is outside [0, 1]"),
    # types
    RecordCase("matrix entry a string", edit(1, _set("acc_class_il.2.2", "0.9")),
               "acc_class_il[2][2] is '0.9' (a string), not a number"),
    RecordCase("memory a string", edit(1, _set("memory_size", "2000")),
               "memory_size is '2000' (a string), not a non-negative number"),
    RecordCase("matrix not a list", edit(1, _set("acc_class_il", {"0": [0.8]})),
               "acc_class_il is an object, not a list of rows"),
    # matrix shapes and consistency
    RecordCase("a row missing", edit(1, lambda d: d["acc_class_il"].pop()),
               "acc_class_il has 2 row(s) but acc_task_il has 3"),
    RecordCase("a row narrower than the stream", edit(1, lambda d: d["acc_task_il"][2].pop()),
               "acc_task_il[2] has 2 entries; every row has one per task of the stream (3)"),
    RecordCase("a hole in the lower triangle", edit(1, _set("acc_class_il.2.1", None)),
               "acc_class_il[2][1] is null"),
    RecordCase("a number above the diagonal", edit(1, _set("acc_class_il.0.2", 0.5)),
               "acc_class_il[0][2] = 0.5 lies above the diagonal"),
    RecordCase("eval_sizes short", edit(1, lambda d: d["eval_sizes"].pop()),
               "eval_sizes has 2 entries for 3 task(s) done"),
    RecordCase("tasks_done contradicts the rows", edit(1, _set("tasks_done", 2)),
               "tasks_done is 2 but the matrices have 3 row(s)"),
    RecordCase("metric disagrees with its matrix", edit(1, _set("metrics.class_il.final_acc", 0.95)),
               "metrics.class_il.final_acc = 0.95 disagrees with its accuracy matrix, which gives 0.7"),
    RecordCase("record of another trial", edit(1, _set("trial_id", trial_id(0))),
               f"records trial_id '{trial_id(0)}'"),
    # with a trials.csv: the rows are rebuilt from result.json
    RecordCase("bad result.json behind a clean trials.csv", edit(1, _set("metrics.class_il.final_acc", 1e308)),
               "metrics.class_il.final_acc = 1e+308 is outside [0, 1]", csv=True),
    RecordCase("text in a trials.csv cell", csv_cell(1, "final_acc", "seventy"),
               "final_acc is 'seventy' (a string), not a number; its numbers are taken from "
               f"trials/{trial_id(1)}/result.json", excluded=False, csv=True),
    RecordCase("trials.csv number disagrees with result.json", csv_cell(2, "final_acc", "0.99"),
               "final_acc 0.99 disagrees with result.json's 0.5; its numbers are taken from "
               f"trials/{trial_id(2)}/result.json", n=2, excluded=False, csv=True),
    RecordCase("trials.csv status disagrees with result.json", csv_cell(6, "status", "completed"),
               "status 'completed' disagrees with result.json's 'truncated'", n=6, excluded=False, csv=True),
]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def _section(md: str, heading: str) -> str:
    m = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", md, flags=re.S | re.M)
    return m.group(1) if m else ""


def _front_table(md: str) -> list[str]:
    """Rows of the first table under "Pareto front": the search's own front (the
    section goes on with the fronts per memory budget and the seed noise)."""
    rows: list[str] = []
    for line in _section(md, "Pareto front").splitlines():
        if line.startswith("| "):
            rows.append(line)
        elif rows and not line.startswith("|"):  # "|---|" is the table's own rule
            break
    return rows


def _front_ids(md: str) -> list[str]:
    """trial_id column of the Pareto front table of report.md."""
    rows = _front_table(md)
    if not rows:
        return []
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    col = header.index("trial_id")
    return [[c.strip() for c in r.strip("|").split("|")][col] for r in rows[1:]]


def _front_column(md: str, column: str) -> dict[str, str]:
    rows = _front_table(md)
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows[1:]]
    return {r[header.index("trial_id")]: r[header.index(column)] for r in cells}


def snapshot(root: Path) -> dict[str, tuple]:
    """path -> (sha256, mtime in ns) of every file under ``root``, and every folder.

    A folder's own mtime is left out: the build folder is created in the output
    folder and removed again, which touches the folder itself but no file in it.
    """
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[str((Path(dirpath) / name).relative_to(root))] = ("dir",)
        for name in filenames:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def _diff(before: dict, after: dict) -> dict[str, list[str]]:
    return {"created": sorted(set(after) - set(before)), "removed": sorted(set(before) - set(after)),
            "changed": sorted(k for k in before.keys() & after.keys() if before[k] != after[k])}


def _no_build_folder(root: Path) -> None:
    leftovers = [str(p) for p in root.rglob(f"{report.BUILD_PREFIX}*")]
    assert leftovers == [], leftovers


# --------------------------------------------------------------------------
# bad records: the report is built without them
# --------------------------------------------------------------------------

@pytest.mark.parametrize("case", RECORD_CASES, ids=[c.id for c in RECORD_CASES])
@pytest.mark.slow  # a full report (figures) per row: 1.5-3 s of CPU each, ~50 s for the table
def test_a_bad_record_is_named_and_excluded(tmp_path, capsys, case: RecordCase):
    root = write_search_fixture(tmp_path / "search", trials=SMALL)
    if case.csv:
        write_trials_csv(root)
    case.breakage(root)
    capsys.readouterr()

    code = report.main([str(root)])
    out, err = capsys.readouterr()

    assert code == 0, err
    assert out.strip() == str(root / "report.html")
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: "), err
    line = lines[0]
    tid = trial_id(case.n)
    assert tid in line and case.message in line, line
    assert f"trials/{tid}/{case.file}" in line, line
    assert "Traceback" not in err
    _no_build_folder(root)

    md = (root / "report.md").read_text()
    notes = _section(md, "Records not trusted")
    assert tid in notes and case.message in notes, notes
    front = _front_ids(md)
    spec = _section(md, "Search")
    if case.excluded:
        assert tid not in front
        assert front == [t for t in INTACT_FRONT if t != tid]
        assert f"excluded 1 ({case.kind})" in spec, spec
        assert "completed 2," in spec                  # 3 completed in the folder, 1 of them not trusted
        assert tid not in _section(md, "Failed and stopped trials")  # listed once, where it belongs
        res = load_search(root)
        assert res.trials.set_index("trial_id").loc[tid, "status"] == "excluded"
    else:
        assert front == INTACT_FRONT                   # result.json's numbers, not the csv's
        assert "excluded" not in spec
        final = _front_column(md, "final acc %")
        assert final == {trial_id(1): "70.0", trial_id(0): "60.0", trial_id(2): "50.0"}


@pytest.mark.slow  # subprocess: analysis/report.py
def test_the_cli_prints_one_warning_and_exits_0(tmp_path):
    """The command itself (not main in-process): exit 0, the report's path on
    stdout, one warning line on stderr, nothing else."""
    root = write_search_fixture(tmp_path / "search", trials=SMALL)
    edit(1, _set("metrics.class_il.final_acc", 1e308))(root)
    proc = subprocess.run([sys.executable, str(REPO / "analysis" / "report.py"), str(root)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(root / "report.html")
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and trial_id(1) in lines[0], proc.stderr


def test_every_bad_record_at_once(tmp_path, capsys):
    """Several bad trials in one folder: one line each, all excluded, the header counts both kinds."""
    root = write_search_fixture(tmp_path / "search", trials=SMALL)
    write_trials_csv(root)
    edit(1, _set("metrics.class_il.final_acc", 1e308))(root)
    raw(0, lambda _: "[]")(root)
    remove_folder(2)(root)
    capsys.readouterr()
    assert report.main([str(root)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("warning: ") for line in err), err
    md = (root / "report.md").read_text()
    assert _front_ids(md) == []
    assert "completed 0" not in md  # no completed trial left: the count is simply absent
    assert "excluded 3 (2 bad record, 1 missing record)" in _section(md, "Search")
    assert "No completed trial with finite objectives: no front." in md


# --------------------------------------------------------------------------
# failed builds: the previous report survives byte for byte
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> Path:
    """A folder whose report was built (all four PNGs, report.md, report.html):
    each failure row starts from a copy of it."""
    root = write_search_fixture(tmp_path_factory.mktemp("reported") / "search")
    write_trials_csv(root)
    report.build_report([root], warn=lambda line: None)
    for name in ("pareto.png", "front_curves.png", "front_matrices.png", "importance.png", "report.md",
                 "report.html"):
        assert (root / name).stat().st_size > 0, name
    return root


def _unknown_space_type(root: Path) -> None:
    spec = json.loads((root / "search.json").read_text())
    spec["space"]["lr"] = {"type": "loguniform", "low": 0.01, "high": 4.0}
    (root / "search.json").write_text(json.dumps(spec, indent=1))


def _inverted_space(root: Path) -> None:
    spec = json.loads((root / "search.json").read_text())
    spec["space"]["memory"] = {"type": "int", "low": 2000, "high": 50, "log": True}
    (root / "search.json").write_text(json.dumps(spec, indent=1))


class _DiskFull:
    """Stands in for the atomic writer: the first ``ok`` writes succeed, then ENOSPC."""

    def __init__(self, real: Callable, ok: int) -> None:
        self.real, self.ok, self.calls = real, ok, 0

    def __call__(self, path, data):
        self.calls += 1
        if self.calls > self.ok:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return self.real(path, data)


@dataclass
class FailureCase:
    id: str
    args: list[str] = field(default_factory=list)   # after the folder; "{ws}" = the copy's parent
    breakage: Callable[[Path], None] | None = None
    disk_full_after: int | None = None              # writes that succeed before ENOSPC
    message: str = ""


# Writes of the full fixture's report, in order: pareto, curves, matrices, importance, report.md, report.html.
FAILURE_CASES = [
    FailureCase("--color nosuch", ["--color", "nosuch"], message="--color 'nosuch': no such parameter"),
    FailureCase("unknown space type in search.json", breakage=_unknown_space_type,
                message="space entry 'lr' has unknown type 'loguniform' (expected float, int or categorical)"),
    FailureCase("inverted space bounds in search.json", breakage=_inverted_space,
                message="space entry 'memory' is not a valid int distribution"),
    FailureCase("disk full at the first figure", disk_full_after=0, message="No space left on device"),
    FailureCase("disk full after three figures", disk_full_after=3, message="No space left on device"),
    FailureCase("disk full at report.html, the last file", disk_full_after=5, message="No space left on device"),
    FailureCase("disk full, --out a new folder", ["--out", "{ws}/fresh"], disk_full_after=1,
                message="No space left on device"),
]


@pytest.mark.parametrize("case", FAILURE_CASES, ids=[c.id for c in FAILURE_CASES])
@pytest.mark.slow  # a full report per row, after the module's own: up to ~4 s of CPU each
def test_a_failed_build_leaves_the_previous_report_whole(reported, tmp_path, capsys, monkeypatch,
                                                         case: FailureCase):
    root = tmp_path / "search"
    shutil.copytree(reported, root)
    if case.breakage:
        case.breakage(root)
    disk = None
    if case.disk_full_after is not None:
        disk = _DiskFull(report.write_bytes_atomic, case.disk_full_after)
        monkeypatch.setattr(report, "write_bytes_atomic", disk)
    before = snapshot(tmp_path)
    capsys.readouterr()

    code = report.main([str(root), *(a.format(ws=tmp_path) for a in case.args)])
    out, err = capsys.readouterr()

    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and case.message in lines[0], err
    assert out == ""
    assert snapshot(tmp_path) == before, _diff(before, snapshot(tmp_path))
    _no_build_folder(tmp_path)
    if disk is not None:
        assert disk.calls == case.disk_full_after + 1       # it really failed partway, where planned
        assert "the previous report is unchanged" in lines[0]


@pytest.mark.slow  # full report builds: ~2.6 s of CPU
def test_an_unexpected_error_partway_leaves_the_previous_report_whole(reported, tmp_path, monkeypatch):
    """Not only expected errors: a bug after some figures are drawn propagates,
    and still nothing of the previous report has changed."""
    root = tmp_path / "search"
    shutil.copytree(reported, root)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the importance figure")

    monkeypatch.setattr(report, "_importance_figure", broken)
    before = snapshot(tmp_path)
    with pytest.raises(RuntimeError, match="a bug in the importance figure"):
        report.main([str(root)])
    assert snapshot(tmp_path) == before, _diff(before, snapshot(tmp_path))
    _no_build_folder(tmp_path)


@pytest.mark.slow  # a full report build, ~2 s of CPU, after the module's own
def test_a_rebuild_replaces_every_file_and_drops_stale_figures(reported, tmp_path):
    """A successful rebuild that draws fewer figures: the new set is complete, the
    figure it no longer draws (importance: 3 completed trials) is gone, nothing left over."""
    root = tmp_path / "search"
    shutil.copytree(reported, root)
    for n in (3, 4, 7):                               # 6 completed -> 3: no importance step
        shutil.rmtree(root / "trials" / trial_id(n))
    write_trials_csv(root)
    old = {name: (root / name).read_bytes() for name in ("pareto.png", "report.md")}
    report.build_report([root], warn=lambda line: None)
    assert not (root / "importance.png").exists()
    assert (root / "pareto.png").read_bytes() != old["pareto.png"]
    assert "only 3 completed trial(s)" in (root / "report.md").read_text()
    assert (root / "report.html").read_text().count("data:image/png;base64,") == 3
    _no_build_folder(root)
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []


# --------------------------------------------------------------------------
# beyond the table: random damage never raises and never lets a bad number through
# --------------------------------------------------------------------------

JUNK = [None, True, 0, 1, -1, 0.5, 2.5, -0.5, 1e308, float("inf"), float("nan"), 10**400, "0.5", "x", [],
        [0.5], [[0.5]], {}, {"a": 1}]


def _paths(x: Any, path: tuple = ()):
    yield path
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _paths(v, path + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _paths(v, path + (i,))


def test_randomly_damaged_records_never_raise_nor_pass_bad_numbers(tmp_path):
    """100 records of the fixture with 1-3 values (anywhere in the record, the
    record itself included) replaced by junk: reading the folder never raises;
    a trial that is not excluded has metrics within their ranges, and a
    completed one has them all finite (so none can vanish from a front)."""
    import copy
    import math
    import random

    from analysis.results import METRIC_RANGE, trials_frame_from_results

    root = write_search_fixture(tmp_path / "search", trials=[t for t in TRIALS if t["n"] in (0, 5, 6, 8)])
    originals = {n: _result_file(root, n).read_text() for n in (0, 5, 6, 8)}
    rng = random.Random(0)
    excluded = 0
    for _ in range(100):
        n = rng.choice(list(originals))
        d: Any = json.loads(originals[n])
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(list(_paths(d)))
            junk = copy.deepcopy(rng.choice(JUNK))
            if not path:
                d = junk
                continue
            target = d
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = junk
        _result_file(root, n).write_text(json.dumps(d))
        row = trials_frame_from_results(root).set_index("trial_id").loc[trial_id(n)]
        if row["status"] == "excluded":
            excluded += 1
            assert row["error"].startswith(f"bad record: trials/{trial_id(n)}/result.json: ")
            continue
        for name, (lo, hi) in METRIC_RANGE.items():
            for col in (name, f"task_il.{name}"):
                assert math.isnan(row[col]) or lo <= row[col] <= hi, (d, col, row[col])
                if row["status"] == "completed":
                    assert math.isfinite(row[col]), (d, col)
        _result_file(root, n).write_text(originals[n])
    assert 30 < excluded < 100  # most damage is caught, some lands where nothing is read (environment, ...)

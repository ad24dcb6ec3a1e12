"""Default configs: where each comes from, what it scored (search/defaults.py),
and ``search/rerun.py --list`` showing both."""
from __future__ import annotations

import json

import pytest

import strategies
from search.defaults import RECORD, default_config, default_loop_knobs, measure_folders, measured_lines, read_record, write_record
from analysis.results import ResultsError
from search import rerun

BUILT_IN = ("der", "ewc", "finetune", "gdumb", "gem", "icarl", "joint", "lwf", "packnet", "replay")


def test_every_built_in_method_says_where_its_defaults_come_from():
    for name in BUILT_IN:
        source = strategies.STRATEGIES[name].defaults_source
        assert len(source) > 40 and "\n" not in source, name


def _direct_runs(out, method, seeds, *sets):
    args = ["--method", method, "--dataset", "synthetic", "--epochs", "1", "--threads", "1", "--eval", "val",
            "--seeds", str(seeds), "--sequential", "--quiet", "--out", str(out)]
    for item in sets:
        args += ["--set", item]
    assert rerun.main(args) == 0


def test_a_measured_default_is_recorded_with_its_seed_mean_and_std_and_goes_stale_when_the_default_changes(
        tmp_path, monkeypatch):
    monkeypatch.delenv("CL_DATA_DIR", raising=False)
    _direct_runs(tmp_path / "runs" / "replay", "replay", 2)
    _direct_runs(tmp_path / "runs" / "replay+kd", "replay", 1, "kd_weight=1")  # a variant: not a default, skipped
    entries = measure_folders(tmp_path / "runs")
    assert sorted(entries) == ["replay"]
    seeds = [json.loads((tmp_path / "runs" / "replay" / f"seed{s}" / "result.json").read_text()) for s in (0, 1)]
    finals = [r["metrics"]["class_il"]["final_acc"] for r in seeds]
    assert finals[0] != finals[1]  # two seeds that differ: the std below is not a trivial 0
    entry = entries["replay"]
    assert entry["final_acc"][0] == pytest.approx(sum(finals) / 2)
    assert entry["final_acc"][1] == pytest.approx(abs(finals[0] - finals[1]) / 2 ** 0.5)  # sample std of two
    assert (entry["dataset"], entry["eval_split"], entry["seeds"]) == ("synthetic", "val", [0, 1])
    assert entry["config"] == default_config("replay") and entry["protocol"]["threads"] == 1

    path = write_record(entries, tmp_path / "record.json")
    record = read_record(path)
    assert list(record) == ["synthetic/val"]
    (line,) = measured_lines("replay", record)
    assert line.startswith("measured on synthetic, val split, 2 seed(s): final acc ")
    assert f"{100 * entry['final_acc'][0]:.1f} ± {100 * entry['final_acc'][1]:.1f} %" in line
    assert measured_lines("icarl", record) == []

    # The default moves on: the old figure is said to be stale, not shown as the new default's.
    record["synthetic/val"]["replay"]["config"]["lr"] = 0.123
    (line,) = measured_lines("replay", record)
    assert "for an older default" in line and "final acc" not in line


def test_a_run_of_another_config_is_refused_not_recorded(tmp_path, monkeypatch):
    monkeypatch.delenv("CL_DATA_DIR", raising=False)
    _direct_runs(tmp_path / "finetune", "finetune", 1, "lr=0.01")
    with pytest.raises(ResultsError, match=r"not finetune's default config today \(differs in lr\)"):
        measure_folders(tmp_path)
    with pytest.raises(ResultsError, match="no folder named after a method"):
        measure_folders(tmp_path / "finetune")


def test_a_method_s_default_loop_knobs_are_part_of_its_recorded_default(tmp_path, monkeypatch):
    """A method whose default config sets a loop knob (``Strategy.loop_defaults``):
    its direct run trains with it, the record keeps it, a run that trained with
    another value (here a flag) is not its default, and a record made before
    the loop default changed is stale."""
    monkeypatch.delenv("CL_DATA_DIR", raising=False)
    monkeypatch.setattr(strategies.STRATEGIES["finetune"], "loop_defaults", {"batch_size": 16})
    _direct_runs(tmp_path / "runs" / "finetune", "finetune", 1)
    result = json.loads((tmp_path / "runs" / "finetune" / "seed0" / "result.json").read_text())
    assert result["protocol"]["batch_size"] == 16  # synthetic's own default is 32
    entry = measure_folders(tmp_path / "runs")["finetune"]
    assert entry["loop_defaults"] == {"batch_size": 16}
    (line,) = measured_lines("finetune", {"synthetic/val": {"finetune": entry}})
    assert "final acc" in line and "batch 16" in line

    monkeypatch.setattr(strategies.STRATEGIES["finetune"], "loop_defaults", {"batch_size": 8})
    (line,) = measured_lines("finetune", {"synthetic/val": {"finetune": entry}})
    assert "for an older default" in line
    with pytest.raises(ResultsError, match=r"not finetune's default config today \(differs in batch_size\)"):
        measure_folders(tmp_path / "runs")


def test_the_committed_record_measures_today_s_defaults():
    # Changing a default without measuring it again fails here: rerun
    # bench/strategy_table.sh on the recorded dataset and search/defaults.py.
    record = read_record(RECORD)
    assert record, f"{RECORD} is missing"
    for key, methods in record.items():
        for method, entry in methods.items():
            assert entry["config"] == default_config(method), f"{key} {method}: recorded for an older default"
            assert entry.get("loop_defaults", {}) == default_loop_knobs(method), \
                f"{key} {method}: recorded with other default loop knobs"


def test_list_shows_each_method_s_source_and_measurement(capsys):
    rerun.list_methods()
    out = capsys.readouterr().out
    for name in BUILT_IN:
        block = out.split(f"\n{name} (")[1] if not out.startswith(f"{name} (") else out[len(name) + 2:]
        lines = block.splitlines()
        assert lines[1].startswith("  defaults from: "), name
        if strategies.STRATEGIES[name].loop_defaults:  # iCaRL trains without augmentation by default
            assert lines.pop(2).startswith("  default loop knobs: augment=none (instead of the dataset's"), name
        assert lines[2].startswith("  measured on ") or lines[2].startswith("  not measured"), name
    assert [n for n in BUILT_IN if strategies.STRATEGIES[n].loop_defaults] == ["icarl"]


def test_the_recording_command_says_what_is_wrong_in_one_line(tmp_path, capsys):
    from search.defaults import main

    assert main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'missing'} is not a folder (give the OUT folder of bench/strategy_table.sh)"
    (tmp_path / "record.json").write_text("{not json")
    (tmp_path / "runs" / "finetune" / "seed0").mkdir(parents=True)
    (tmp_path / "runs" / "finetune" / "seed0" / "result.json").write_text("{cut short")
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "record.json")]) == 2
    err = capsys.readouterr().err.strip()
    # the same words as every other reader of result files (analysis.results.read_result)
    assert err.startswith("error: ") and "result.json is not valid JSON (line 1 column 2" in err and "\n" not in err

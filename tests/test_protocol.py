"""The typed stream protocol (core/protocol.py) and load_stream (datasets/protocol.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.config import ConfigError
from core.protocol import StreamProtocol, upgrade_search_spec


def test_fields_are_typed_and_bound_checked():
    p = StreamProtocol.from_dict({"dataset": "gtsrb", "classes": "40", "tasks": 5, "task_sizes": None})
    assert p.classes == 40 and p.tasks == 5 and p.task_sizes is None
    assert StreamProtocol.from_dict({"dataset": "digits", "task_sizes": "4,3,3"}).task_sizes == (4, 3, 3)
    for values, message in (
        ({"dataset": "gtsrb", "tasks": 0}, "tasks=0 is below its minimum 1"),
        ({"dataset": "gtsrb", "tasks": 5, "classes": 0}, "classes=0 is below its minimum 1"),
        ({"dataset": "gtsrb", "tasks": 5, "val_fraction": 1.0}, "val_fraction=1.0 is above its maximum"),
        ({"dataset": "gtsrb", "tasks": 5, "stream_seed": -1}, "stream_seed=-1 is below its minimum 0"),
        ({"dataset": "imagenet", "tasks": 5}, "dataset='imagenet' must be one of"),
        ({"dataset": "digits", "task_sizes": "4,-2"}, "task_sizes=-2 is below its minimum 1"),
        ({"dataset": "digits", "tasks": 2, "task_sizes": [5, 5]}, "give tasks or task_sizes, not both"),
        ({"dataset": "digits"}, "give tasks or task_sizes"),
        ({"dataset": "folders", "tasks": 2, "folders": ["a"]}, "the tasks are the folders"),
        ({"dataset": "folders"}, "needs folders"),
        ({"dataset": "digits", "tasks": 2, "folders": ["a"]}, "only used with dataset 'folders'"),
        ({"dataset": "digits", "tasks": 2, "epochs": 3}, "unknown key 'epochs'"),
    ):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            StreamProtocol.from_dict(values)


def test_protocol_is_frozen_and_round_trips_through_json():
    p = StreamProtocol.from_dict({"dataset": "digits", "task_sizes": [4, 3, 3], "class_order": "seeded"})
    with pytest.raises(AttributeError):
        p.tasks = 3  # type: ignore[misc]
    again = StreamProtocol.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p


def test_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = StreamProtocol.from_dict({"dataset": "folders", "folders": ["a", "b"], "data_dir": "data"})
    q = p.with_absolute_paths()
    assert q.folders == (str(tmp_path / "a"), str(tmp_path / "b")) and q.data_dir == str(tmp_path / "data")


def test_load_stream_records_the_protocol():
    from datasets.protocol import load_stream

    p = StreamProtocol.from_dict({"dataset": "digits", "task_sizes": [4, 3, 3], "val_fraction": 0.2})
    stream = load_stream(p)
    assert [len(t.classes) for t in stream.tasks] == [4, 3, 3]
    assert stream.describe()["protocol"] == p.to_dict()
    # A rerun trains on train + validation: the override empties every val split.
    assert all(len(t.val) == 0 for t in load_stream(p, val_fraction=0.0).tasks)


def test_folders_protocol_gets_its_task_sizes_from_the_data(tmp_path):
    from PIL import Image

    from datasets.protocol import load_arrays

    roots = []
    for t, classes in enumerate((["a", "b"], ["c", "d", "e"])):
        root = tmp_path / f"task{t}"
        for split, n in (("train", 3), ("test", 1)):
            for c in classes:
                (root / split / c).mkdir(parents=True)
                for i in range(n):
                    Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / split / c / f"{i}.png")
        roots.append(str(root))
    p = StreamProtocol.from_dict({"dataset": "folders", "folders": roots, "image_size": 8})
    _, completed = load_arrays(p)
    assert completed.task_sizes == (2, 3) and completed.folders == p.folders


def test_format_1_search_spec_reads_as_format_2():
    flat = {"classes": 40, "tasks": 5, "backbone": "simplecnn", "epochs": 5, "augment": "crop", "batch_size": 128,
            "dataset": "gtsrb", "data_dir": "../shared/data", "download": False, "task_sizes": None,
            "class_order": "natural", "stream_seed": 0, "val_fraction": 0.1, "precision": "bf16",
            "device": "auto", "threads": 0, "pretrained": False, "seed": 0}
    old = {"format": "clsearch-search/1", "method": "icarl", "protocol": flat, "trials": 64}
    new = upgrade_search_spec(old)
    assert new["format"] == "clsearch-search/2" and "protocol" not in new and new["trials"] == 64
    assert StreamProtocol.from_dict(new["stream_protocol"]).classes == 40
    from search.cli import loop_config_from_dict
    loop = loop_config_from_dict(new["loop"])
    assert (loop.epochs, loop.precision, loop.eval_split) == (5, "bf16", "val")
    assert upgrade_search_spec(new) is new


def test_report_reads_a_format_1_folder(tmp_path):
    from analysis.results import load_search, write_trials_csv
    from tests.fixtures_results import write_search_fixture

    root = write_search_fixture(tmp_path / "s")
    spec = json.loads((root / "search.json").read_text())
    flat = {**spec.pop("stream_protocol"), **spec.pop("loop")}
    spec.update(format="clsearch-search/1", protocol=flat)
    (root / "search.json").write_text(json.dumps(spec))
    write_trials_csv(root)
    results = load_search(Path(root))
    assert results.num_tasks == 3 and results.spec["stream_protocol"]["dataset"] == "synthetic"

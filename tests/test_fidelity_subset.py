"""A cheaper fidelity that keeps every task: a share of each class's images
(datasets.stream.fidelity_subset, LoopConfig.train_fraction / eval_fraction)."""
from __future__ import annotations

import json
import math

import pytest
import torch

import strategies  # noqa: F401  (registers the strategies)
from core.config import ConfigError
from datasets.stream import fidelity_subset
from search.spaces import knob_kinds, resolve_space
from strategies.loop import make_strategy, run
from tests.helpers import tiny_loop_config


def _per_class(split) -> dict[int, int]:
    labels, counts = torch.unique(split.y, return_counts=True)
    return dict(zip(labels.tolist(), counts.tolist()))


def test_every_class_keeps_its_share_of_images_and_at_least_one(tiny_stream):
    sub = fidelity_subset(tiny_stream, train_fraction=0.3, eval_fraction=0.01, seed=0)
    assert sub.num_tasks == tiny_stream.num_tasks and sub.class_order == tiny_stream.class_order
    for full, part in zip(tiny_stream.tasks, sub.tasks):
        assert part.classes == full.classes and part.label_offset == full.label_offset
        assert _per_class(part.train) == {c: math.ceil(0.3 * n) for c, n in _per_class(full.train).items()}
        # 1 % of 8 validation images per class rounds up to one: no class vanishes.
        assert _per_class(part.val) == {c: 1 for c in _per_class(full.val)}
        assert _per_class(part.test) == {c: 1 for c in _per_class(full.test)}
        # The kept images are the full split's, label with image.
        for split_full, split_part in ((full.train, part.train), (full.val, part.val)):
            rows = {bytes(x.flatten().tolist()): int(y) for x, y in zip(split_full.x, split_full.y)}
            assert all(rows[bytes(x.flatten().tolist())] == int(y) for x, y in zip(split_part.x, split_part.y))


def test_the_training_share_follows_the_seed_and_the_evaluation_share_does_not(tiny_stream):
    a = fidelity_subset(tiny_stream, 0.5, 0.5, seed=0)
    again = fidelity_subset(tiny_stream, 0.5, 0.5, seed=0)
    b = fidelity_subset(tiny_stream, 0.5, 0.5, seed=1)
    for ta, tagain, tb in zip(a.tasks, again.tasks, b.tasks):
        assert torch.equal(ta.train.x, tagain.train.x)
        assert torch.equal(ta.val.x, tb.val.x) and torch.equal(ta.test.x, tb.test.x)
    assert any(not torch.equal(ta.train.x, tb.train.x) for ta, tb in zip(a.tasks, b.tasks))
    assert fidelity_subset(tiny_stream, 1.0, 1.0, seed=3) is tiny_stream


def test_a_run_at_a_share_trains_and_scores_on_that_share_and_records_it(tiny_stream):
    full_loop = tiny_loop_config()
    loop = tiny_loop_config(train_fraction=0.5, eval_fraction=0.5)
    result = run(make_strategy("finetune", {}, tiny_stream, loop), tiny_stream, loop, log=None)
    full = run(make_strategy("finetune", {}, tiny_stream, full_loop), tiny_stream, full_loop, log=None)
    sub = fidelity_subset(tiny_stream, 0.5, 0.5, seed=loop.seed)
    assert result.status == "completed"
    # Every task's images trained: its share, times the epochs (finetune has one phase).
    assert [t["images_trained"] for t in result.timings] == [loop.epochs * len(t.train) for t in sub.tasks]
    assert [t["images_trained"] for t in full.timings] == [loop.epochs * len(t.train) for t in tiny_stream.tasks]
    assert result.eval_sizes == [len(t.val) for t in sub.tasks]
    # The record: the benchmark's stream, the share in the protocol.
    assert result.stream == json.loads(json.dumps(tiny_stream.describe()))
    assert result.protocol["train_fraction"] == 0.5 and result.protocol["eval_fraction"] == 0.5
    assert full.protocol["train_fraction"] == 1.0


def test_the_shares_are_protocol_knobs_searched_only_on_request():
    with pytest.raises(ConfigError, match="add --search-protocol train_fraction to search it"):
        resolve_space("icarl", ["train_fraction=0.1:0.5"], {})
    space, _ = resolve_space("icarl", [], {"eval_fraction": "0.25"}, ("eval_fraction",))
    assert knob_kinds(["train_fraction", "eval_fraction"]) == {"train_fraction": "protocol",
                                                               "eval_fraction": "protocol"}
    for bad, message in (("0", "below its minimum"), ("1.5", "above its maximum")):
        with pytest.raises(ConfigError, match=f"loop: train_fraction={bad}.* {message}"):
            resolve_space("icarl", [], {"train_fraction": bad}, ("train_fraction",))


def test_a_rerun_recorded_before_the_shares_existed_is_still_kept(tmp_path):
    """Its protocol lacks train_fraction / eval_fraction: it ran on the whole data,
    their default, so the same command keeps it instead of training again."""
    from search.rerun import finished_run

    like = {"method": "finetune", "config": {"lr": 0.1}, "stream": {"name": "s", "protocol": {}},
            "protocol": {"epochs": 2, "train_fraction": 1.0, "eval_fraction": 1.0, "threads": 1}}
    old = {**like, "status": "completed", "protocol": {"epochs": 2, "threads": 1}}
    path = tmp_path / "result.json"
    path.write_text(json.dumps(old))
    assert finished_run(path, like) is not None
    path.write_text(json.dumps({**old, "protocol": {"epochs": 2, "train_fraction": 0.5, "threads": 1}}))
    assert finished_run(path, like) is None

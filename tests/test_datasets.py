"""The data layer: sources -> DatasetArrays -> class-incremental Stream.

Fast tests use tiny synthetic arrays, scikit-learn's digits and small files
written to tmp dirs. Tests marked ``realdata`` use the real GTSRB file through
the session fixture ``gtsrb_arrays`` (tests/conftest.py; run them with
``CL_DATA_DIR=/work/shared/data``).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets import (
    DataNotFoundError,
    DatasetArrays,
    DatasetError,
    Split,
    Stream,
    Task,
    build_stream,
    find_data_dir,
    load_cifar100,
    load_dataset,
    load_digits,
    load_gtsrb,
    make_synthetic,
    plan_stream,
)
from datasets.builder import split_sizes
from datasets.sources import GTSRB_CLASS_NAMES


# --------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def synth() -> DatasetArrays:
    return make_synthetic(num_classes=6, train_per_class=40, test_per_class=10, image_size=8, seed=0)


@pytest.fixture(scope="module")
def many() -> DatasetArrays:
    # 43 classes like GTSRB, 4x4 images: enough to test cutting and ordering.
    return make_synthetic(num_classes=43, train_per_class=6, test_per_class=2, image_size=4,
                          groups_per_class=3, seed=1)


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


def nhwc(split_x: torch.Tensor) -> np.ndarray:
    return split_x.permute(0, 2, 3, 1).numpy()


def check_stream_complete(stream: Stream, arrays: DatasetArrays, selected: list[int]) -> None:
    task_classes = [c for t in stream.tasks for c in t.classes]
    assert sorted(task_classes) == sorted(selected)
    assert len(set(task_classes)) == len(task_classes)
    assert stream.class_order == task_classes
    for t in stream.tasks:
        assert isinstance(t, Task)
        for split in (t.train, t.val, t.test):
            assert isinstance(split, Split)
            assert split.x.dtype == torch.uint8 and split.x.is_contiguous()
            assert tuple(split.x.shape[1:]) == stream.image_shape
            assert split.y.dtype == torch.int64
            if len(split):
                assert set(split.y.tolist()) <= set(t.labels)
        # Every class of the task has training images and every train label is there.
        assert set(t.train.y.tolist()) == set(t.labels)
    # Train + val images of the stream = all training images of the selected classes.
    n_sel = int(np.isin(arrays.y_train, selected).sum())
    assert sum(len(t.train) + len(t.val) for t in stream.tasks) == n_sel
    assert sum(len(t.test) for t in stream.tasks) == int(np.isin(arrays.y_test, selected).sum())


def gtsrb_like_npz(path: Path, n_train: int = 12, n_test: int = 5, **override) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 43).astype(np.int16),
        "x_test": rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        "y_test": (np.arange(n_test) % 43).astype(np.int16),
        "track_train": ((np.arange(n_train) % 43) * 10000 + np.arange(n_train) // 43).astype(np.int32),
    }
    for key, value in override.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No CL_DATA_DIR and a working directory without ./data."""
    monkeypatch.delenv("CL_DATA_DIR", raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


# --------------------------------------------------------------------------- completeness, determinism

def test_stream_complete_and_deterministic(synth):
    a = build_stream(synth, num_tasks=3, seed=3, class_order="seeded", val_fraction=0.2)
    b = build_stream(synth, num_tasks=3, seed=3, class_order="seeded", val_fraction=0.2)
    check_stream_complete(a, synth, list(range(6)))
    assert a.class_order == b.class_order
    for ta, tb in zip(a.tasks, b.tasks):
        for name in ("train", "val", "test"):
            sa, sb = getattr(ta, name), getattr(tb, name)
            assert torch.equal(sa.x, sb.x) and torch.equal(sa.y, sb.y)
    assert a.channel_mean == b.channel_mean and a.channel_std == b.channel_std
    assert a.name == "synthetic" and a.info == {"dataset": "synthetic", "val_split": "group"}
    assert a.describe()["task_classes"] == [t.classes for t in a.tasks]


def test_natural_and_seeded_order(many):
    natural = build_stream(many, num_tasks=5)
    assert natural.class_order == list(range(43))
    s1 = build_stream(many, num_tasks=5, class_order="seeded", seed=1)
    s2 = build_stream(many, num_tasks=5, class_order="seeded", seed=2)
    assert sorted(s1.class_order) == list(range(43))
    assert s1.class_order != s2.class_order and s1.class_order != natural.class_order
    # class names follow the stream order
    assert s1.class_names == [f"class {c}" for c in s1.class_order]


def test_train_split_is_shuffled(synth):
    s = build_stream(synth, num_tasks=2)
    y = s.tasks[0].train.y
    assert not torch.equal(y, torch.sort(y).values)


def test_channel_stats_cover_all_training_images(synth):
    from datasets.stream import channel_stats

    s = build_stream(synth, num_tasks=3)
    mean, std = channel_stats(torch.cat([t.train.x for t in s.tasks]))
    assert np.allclose(s.channel_mean, mean, atol=1e-9) and np.allclose(s.channel_std, std, atol=1e-9)


# --------------------------------------------------------------------------- task sizes

def test_remainder_goes_to_first_tasks(many):
    assert split_sizes(43, 5) == [9, 9, 9, 8, 8]
    s = build_stream(many, num_tasks=5)
    assert s.task_sizes() == [9, 9, 9, 8, 8]
    assert [t.label_offset for t in s.tasks] == [0, 9, 18, 27, 35]
    check_stream_complete(s, many, list(range(43)))


def test_explicit_task_sizes(synth):
    s = build_stream(synth, task_sizes=[1, 2, 3])
    assert s.task_sizes() == [1, 2, 3]
    assert [t.classes for t in s.tasks] == [[0], [1, 2], [3, 4, 5]]
    assert [t.label_offset for t in s.tasks] == [0, 1, 3]


def test_classes_int_and_list(many):
    s = build_stream(many, classes=40, num_tasks=5)
    assert [t.classes for t in s.tasks] == [list(range(8 * k, 8 * k + 8)) for k in range(5)]
    sub = build_stream(many, classes=[30, 2, 17, 5], num_tasks=2)
    assert sub.class_order == [2, 5, 17, 30]  # natural order of the subset
    assert sub.num_classes == 4
    check_stream_complete(sub, many, [2, 5, 17, 30])


# --------------------------------------------------------------------------- relabelling

def test_relabel_contiguous_and_matches_source(synth):
    s = build_stream(synth, num_tasks=3, class_order="seeded", seed=5)
    plan = plan_stream(synth, num_tasks=3, class_order="seeded", seed=5)
    for t, tp in zip(s.tasks, plan.tasks):
        assert list(t.labels) == list(range(t.label_offset, t.label_offset + t.num_classes))
        for split, idx, x, y in (("train", tp.train_idx, synth.x_train, synth.y_train),
                                 ("val", tp.val_idx, synth.x_train, synth.y_train),
                                 ("test", tp.test_idx, synth.x_test, synth.y_test)):
            sp = getattr(t, split)
            assert np.array_equal(nhwc(sp.x), x[idx])
            # stream label i <-> original class class_order[i]
            assert [s.class_order[l] for l in sp.y.tolist()] == y[idx].tolist()


# --------------------------------------------------------------------------- validation splits

def test_val_train_test_disjoint(synth):
    plan = plan_stream(synth, num_tasks=3, val_fraction=0.3)
    seen_train: set[int] = set()
    seen_test: set[int] = set()
    for tp in plan.tasks:
        tr, va, te = set(tp.train_idx.tolist()), set(tp.val_idx.tolist()), set(tp.test_idx.tolist())
        assert tr and va and te
        assert not tr & va
        assert not (tr | va) & seen_train and not te & seen_test
        seen_train |= tr | va
        seen_test |= te
    assert len(seen_train) == len(synth.y_train) and len(seen_test) == len(synth.y_test)


def test_grouped_val_shares_no_group(synth):
    s = build_stream(synth, num_tasks=3, val_fraction=0.2)
    assert s.info["val_split"] == "group"
    plan = plan_stream(synth, num_tasks=3, val_fraction=0.2)
    g = synth.groups_train
    for tp in plan.tasks:
        train_groups = set(g[tp.train_idx].tolist())
        val_groups = set(g[tp.val_idx].tolist())
        assert val_groups and not train_groups & val_groups
        # each class gives at least one whole group to val, never all of its groups
        for c in tp.classes:
            in_val = {x for x in val_groups if x // 1000 == c}
            assert 1 <= len(in_val) < 4


def test_grouped_val_takes_groups_until_fraction():
    arrays = make_synthetic(num_classes=2, train_per_class=100, test_per_class=1, groups_per_class=10, seed=0)
    plan = plan_stream(arrays, num_tasks=1, val_fraction=0.25)
    # groups of 10 images: at least 25 of 100 -> 3 whole groups per class
    assert len(plan.tasks[0].val_idx) == 60


def test_stratified_val_has_every_class(synth):
    arrays = dataclasses.replace(synth, groups_train=None)
    s = build_stream(arrays, num_tasks=3, val_fraction=0.1)
    assert s.info["val_split"] == "stratified"
    for t in s.tasks:
        assert set(t.val.y.tolist()) == set(t.labels)
        # round(0.1 * 40) = 4 images per class
        assert len(t.val) == 4 * t.num_classes
    # at least one image per class even when the fraction rounds to zero
    tiny = build_stream(arrays, num_tasks=3, val_fraction=0.001)
    assert all(set(t.val.y.tolist()) == set(t.labels) for t in tiny.tasks)


def test_val_fraction_zero_gives_empty_val(synth):
    s = build_stream(synth, num_tasks=2, val_fraction=0.0)
    assert s.info["val_split"] == "none"
    assert all(len(t.val) == 0 and t.val.x.dim() == 4 for t in s.tasks)
    assert sum(len(t.train) for t in s.tasks) == len(synth.y_train)


def test_val_split_of_a_class_does_not_depend_on_task_cut(synth):
    a = plan_stream(synth, num_tasks=3, seed=4)
    b = plan_stream(synth, task_sizes=[5, 1], seed=4)
    val_a = np.sort(np.concatenate([t.val_idx for t in a.tasks]))
    val_b = np.sort(np.concatenate([t.val_idx for t in b.tasks]))
    assert np.array_equal(val_a, val_b)


# --------------------------------------------------------------------------- argument errors

@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(num_tasks=7), "more than the 6 selected classes"),
        (dict(num_tasks=0), "num_tasks must be an integer >= 1"),
        (dict(), "pass num_tasks or task_sizes"),
        (dict(num_tasks=2, task_sizes=[3, 3]), "not both"),
        (dict(task_sizes=[3, 2]), "sum to 5 but 6 classes"),
        (dict(task_sizes=[6, 0]), "positive integers"),
        (dict(num_tasks=2, classes=[0, 1, 99]), "unknown class id(s) [99]"),
        (dict(num_tasks=2, classes=[0, 0, 1]), "more than once"),
        (dict(num_tasks=2, classes=7), "classes=7 is out of range"),
        (dict(num_tasks=2, val_fraction=1.0), "val_fraction must be in [0, 1)"),
        (dict(num_tasks=2, val_fraction=-0.1), "val_fraction must be in [0, 1)"),
        (dict(num_tasks=2, class_order="random"), "class_order must be one of natural, seeded"),
        (dict(num_tasks=2, seed=-1), "seed must be an integer >= 0"),
    ],
)
def test_build_stream_errors(synth, kwargs, fragment):
    with pytest.raises(DatasetError) as excinfo:
        build_stream(synth, **kwargs)
    assert fragment in one_line_error(excinfo)


def test_groups_crossing_classes_rejected(synth):
    arrays = dataclasses.replace(synth, groups_train=np.zeros(len(synth.y_train), dtype=np.int64))
    with pytest.raises(DatasetError, match="must not cross classes"):
        build_stream(arrays, num_tasks=2)


@pytest.mark.parametrize(
    "change, fragment",
    [
        (dict(x_train=np.zeros((10, 32, 32), np.uint8)), "array x_train has shape (10, 32, 32) but needs N x H x W x C"),
        (dict(x_train=np.zeros((10, 4, 4, 3), np.float32)), "x_train has dtype float32 but needs uint8"),
        (dict(y_train=np.zeros(9, np.int64)), "y_train has 9 entries but x_train has 10 images"),
        (dict(y_train=-np.ones(10, np.int64)), "negative label -1"),
        (dict(y_train=np.zeros(10, np.float64)), "needs an integer dtype"),
        (dict(groups_train=np.zeros(3, np.int64)), "groups_train has 3 entries"),
        (dict(x_test=np.zeros((2, 5, 5, 3), np.uint8)), "must match"),
        (dict(class_names=["a"]), "class_names has 1 names"),
    ],
)
def test_dataset_arrays_validation(change, fragment):
    base = dict(name="toy", x_train=np.zeros((10, 4, 4, 3), np.uint8), y_train=np.arange(10) % 2,
                x_test=np.zeros((2, 4, 4, 3), np.uint8), y_test=np.array([0, 1]))
    base.update(change)
    with pytest.raises(DatasetError) as excinfo:
        DatasetArrays(**base)
    msg = one_line_error(excinfo)
    assert msg.startswith("toy: ") and fragment in msg


def test_dataset_arrays_labels_become_int64():
    a = DatasetArrays("toy", np.zeros((3, 2, 2, 1), np.uint8), np.array([0, 1, 1], np.int16),
                      np.zeros((1, 2, 2, 1), np.uint8), np.array([1], np.int16))
    assert a.y_train.dtype == np.int64 and a.y_test.dtype == np.int64


# --------------------------------------------------------------------------- sources: files

def test_find_data_dir_order(tmp_path, monkeypatch):
    monkeypatch.setenv("CL_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path)
    dirs = find_data_dir(str(tmp_path / "arg"))
    assert dirs == [tmp_path / "arg", tmp_path / "env", tmp_path / "data"]
    monkeypatch.delenv("CL_DATA_DIR")
    assert find_data_dir(None) == [tmp_path / "data"]


def test_gtsrb_missing_says_where_it_looked(isolated):
    where = isolated / "nowhere"
    with pytest.raises(DataNotFoundError) as excinfo:
        load_gtsrb(where)
    msg = one_line_error(excinfo)
    assert msg.startswith("GTSRB not found: looked for gtsrb32.npz in ")
    assert str(where) in msg and str(isolated / "cwd" / "data") in msg
    assert "--data-dir" in msg and "CL_DATA_DIR" in msg and "--download" in msg


def test_gtsrb_npz_loads_from_env_dir(isolated, monkeypatch):
    gtsrb_like_npz(isolated / "gtsrb32.npz")
    monkeypatch.setenv("CL_DATA_DIR", str(isolated))
    a = load_gtsrb()
    assert a.name == "gtsrb" and a.x_train.shape == (12, 32, 32, 3)
    assert a.y_train.dtype == np.int64 and a.groups_train is not None
    assert a.class_names[14] == "stop" and len(a.class_names) == 43
    assert load_dataset("GTSRB", data_dir=isolated).x_test.shape == (5, 32, 32, 3)


@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_gtsrb_truncated_npz(isolated, keep):
    path = gtsrb_like_npz(isolated / "gtsrb32.npz", n_train=40)
    load_gtsrb(isolated)  # valid before truncation
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(DatasetError) as excinfo:
        load_gtsrb(isolated)
    msg = one_line_error(excinfo)
    assert msg.startswith(str(path)) and "truncated or corrupt" in msg
    assert not isinstance(excinfo.value, DataNotFoundError)


def test_gtsrb_corrupt_member(isolated):
    # Damage the compressed bytes in the middle while keeping the zip directory:
    # the error comes when an array is read, and must still be one line.
    path = gtsrb_like_npz(isolated / "gtsrb32.npz", n_train=40)
    data = bytearray(path.read_bytes())
    mid = len(data) // 3
    data[mid:mid + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError) as excinfo:
        load_gtsrb(isolated)
    assert one_line_error(excinfo).startswith(str(path))


@pytest.mark.parametrize(
    "override, fragment",
    [
        (dict(track_train=None), "missing array(s) track_train"),
        (dict(x_train=np.zeros((10, 32, 32), np.uint8)), "array x_train has shape (10, 32, 32) but needs N x H x W x C"),
        (dict(x_test=np.zeros((5, 32, 32, 1), np.uint8)), "x_test has shape (5, 32, 32, 1)"),
        (dict(y_train=np.zeros(11, np.int16)), "train arrays have different lengths"),
        (dict(y_test=np.full(5, 43, np.int16)), "y_test holds labels 43..43 but needs 0..42"),
        (dict(x_train=np.zeros((12, 32, 32, 3), np.float32)), "x_train has dtype float32"),
        (dict(y_train=np.zeros((12, 2), np.int16)), "y_train has shape (12, 2)"),
    ],
)
def test_gtsrb_npz_bad_arrays(isolated, override, fragment):
    path = gtsrb_like_npz(isolated / "gtsrb32.npz", **override)
    with pytest.raises(DatasetError) as excinfo:
        load_gtsrb(isolated)
    msg = one_line_error(excinfo)
    assert msg.startswith(str(path)) and fragment in msg
    assert "gtsrb32.npz" in msg


def test_gtsrb_npz_refuses_pickles(isolated):
    path = isolated / "gtsrb32.npz"
    gtsrb_like_npz(path, y_test=np.array([0, 1, 2, 3, 4], dtype=object))
    with pytest.raises(DatasetError, match="pickled objects"):
        load_gtsrb(isolated)


def test_gtsrb_torchvision_folder(isolated):
    """torchvision's GTSRB layout: images resized to 32x32 after the ROI crop,
    tracks from the official ``TTTTT_FFFFF`` file names."""
    from PIL import Image

    base = isolated / "tv" / "gtsrb"
    header = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
    for c in range(2):
        folder = base / "GTSRB" / "Training" / f"{c:05d}"
        folder.mkdir(parents=True)
        rows = []
        for track in range(2):
            for frame in range(2):
                name = f"{track:05d}_{frame:05d}.ppm"
                img = Image.new("RGB", (40, 30), (0, 0, 255))  # blue border ...
                img.paste((255, 0, 0), (5, 5, 35, 25))          # ... red sign inside the ROI
                img.save(folder / name)
                rows.append(f"{name};40;30;5;5;35;25;{c}\n")
        (folder / f"GT-{c:05d}.csv").write_text(header + "".join(rows))
    test_dir = base / "GTSRB" / "Final_Test" / "Images"
    test_dir.mkdir(parents=True)
    rows = []
    for i in range(3):
        Image.new("RGB", (20, 25), (0, 255, 0)).save(test_dir / f"{i:05d}.ppm")
        rows.append(f"{i:05d}.ppm;20;25;0;0;20;25;{i % 2}\n")
    (base / "GT-final_test.csv").write_text(header + "".join(rows))

    a = load_gtsrb(isolated / "tv")
    assert a.x_train.shape == (8, 32, 32, 3) and a.x_test.shape == (3, 32, 32, 3)
    assert a.y_train.tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and a.y_test.tolist() == [0, 1, 0]
    assert a.groups_train.tolist() == [0, 0, 1, 1, 10000, 10000, 10001, 10001]
    assert (a.x_train[..., 0] == 255).all() and (a.x_train[..., 2] == 0).all()  # cropped to the red ROI
    assert (a.x_test[..., 1] == 255).all()
    s = build_stream(a, num_tasks=2, val_fraction=0.25)
    assert s.info["val_split"] == "group" and all(len(t.val) == 2 for t in s.tasks)


def test_cifar100_local_npz_and_missing(isolated):
    with pytest.raises(DataNotFoundError) as excinfo:
        load_cifar100(isolated)
    msg = one_line_error(excinfo)
    assert msg.startswith("CIFAR-100 not found") and str(isolated) in msg
    rng = np.random.default_rng(0)
    np.savez(isolated / "cifar100.npz",
             x_train=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), y_train=np.arange(20) % 100,
             x_test=rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), y_test=np.arange(4),
             class_names=np.array([f"c{i}" for i in range(100)]))
    a = load_cifar100(isolated)
    assert a.name == "cifar100" and a.x_train.shape == (20, 32, 32, 3) and a.class_names[3] == "c3"


# --------------------------------------------------------------------------- sources: embedded

def test_digits_offline():
    a = load_digits()
    assert a.name == "digits" and a.x_train.shape[1:] == (8, 8, 1) and a.x_train.dtype == np.uint8
    assert len(a.y_train) + len(a.y_test) == 1797
    assert int(a.x_train.max()) == 255 and int(a.x_train.min()) == 0
    assert sorted(np.unique(a.y_test).tolist()) == list(range(10))
    assert abs(len(a.y_test) / 1797 - 0.25) < 0.01
    assert np.array_equal(load_digits().y_test, a.y_test)  # fixed split
    s = build_stream(a, num_tasks=5)
    assert s.image_shape == (1, 8, 8)
    assert tuple(s.tasks[0].train.x.shape[1:]) == (1, 8, 8)
    assert s.info["val_split"] == "stratified" and len(s.channel_mean) == 1
    check_stream_complete(s, a, list(range(10)))


def test_synthetic_shape_and_groups():
    a = make_synthetic(num_classes=3, train_per_class=8, test_per_class=2, image_size=5, channels=1,
                       groups_per_class=2, seed=7)
    assert a.x_train.shape == (24, 5, 5, 1) and a.x_test.shape == (6, 5, 5, 1)
    assert sorted(set(a.groups_train.tolist())) == [0, 1, 1000, 1001, 2000, 2001]
    assert np.array_equal(a.x_train, make_synthetic(num_classes=3, train_per_class=8, test_per_class=2,
                                                    image_size=5, channels=1, groups_per_class=2,
                                                    seed=7).x_train)
    with pytest.raises(DatasetError):
        make_synthetic(num_classes=0)


def test_synthetic_is_learnable_and_forgettable():
    """A tiny CNN learns each 2-class task in 2 epochs; fine-tuning on the next
    task forgets the previous one (what strategy tests rely on)."""
    torch.manual_seed(0)
    s = build_stream(make_synthetic(), num_tasks=3, seed=0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(32, 6))
    mean = torch.tensor(s.channel_mean).view(1, 3, 1, 1)
    std = torch.tensor(s.channel_std).view(1, 3, 1, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)

    def acc(task, seen):
        with torch.no_grad():
            out = net((task.test.x.float() / 255 - mean) / std)[:, :seen]
        return (out.argmax(1) == task.test.y).float().mean().item()

    for task in s.tasks[:2]:
        seen = task.label_offset + task.num_classes
        for _ in range(2):
            for b in torch.randperm(len(task.train)).split(16):
                x = (task.train.x[b].float() / 255 - mean) / std
                loss = torch.nn.functional.cross_entropy(net(x)[:, :seen], task.train.y[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
        assert acc(task, seen) > 0.9
    assert acc(s.tasks[0], 4) < 0.5


def test_load_dataset_registry():
    assert load_dataset("synthetic").name == "synthetic"
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("mnist")
    assert one_line_error(excinfo) == "unknown dataset 'mnist'; known: cifar100, digits, gtsrb, npz, synthetic"


@pytest.mark.slow  # subprocess: a fresh interpreter
def test_import_is_light():
    """``import datasets`` must not pull in torchvision or scikit-learn."""
    import subprocess
    import sys

    code = "import sys, datasets; print('torchvision' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert out.stdout.strip() == "False False", out.stderr


# --------------------------------------------------------------------------- real GTSRB

@pytest.fixture(scope="module")
def notebook_plan(gtsrb_arrays):
    return plan_stream(gtsrb_arrays, classes=40, num_tasks=5, val_fraction=0.1, seed=0)


@pytest.mark.realdata
@pytest.mark.slow  # real GTSRB file
def test_gtsrb_real_file(gtsrb_arrays):
    a = gtsrb_arrays
    assert a.x_train.shape == (39209, 32, 32, 3) and a.x_test.shape == (12630, 32, 32, 3)
    assert a.classes == list(range(43)) and a.groups_train is not None
    assert len(np.unique(a.groups_train)) == 1307
    assert a.class_names == GTSRB_CLASS_NAMES
    assert (a.class_names[0], a.class_names[14], a.class_names[17], a.class_names[40]) == (
        "speed limit 20", "stop", "no entry", "roundabout")


@pytest.mark.realdata
@pytest.mark.slow  # real GTSRB file
def test_gtsrb_notebook_protocol(gtsrb_arrays, notebook_plan):
    a = gtsrb_arrays
    s = build_stream(a, classes=40, num_tasks=5, val_fraction=0.1, seed=0)
    assert [t.classes for t in s.tasks] == [list(range(8 * k, 8 * k + 8)) for k in range(5)]
    assert s.task_sizes() == [8] * 5 and s.image_shape == (3, 32, 32)
    assert s.info == {"dataset": "gtsrb", "val_split": "group"}
    check_stream_complete(s, a, list(range(40)))
    # No val image shares a physical track with a training image.
    g = a.groups_train
    train_tracks = set(np.concatenate([g[t.train_idx] for t in notebook_plan.tasks]).tolist())
    val_tracks = set(np.concatenate([g[t.val_idx] for t in notebook_plan.tasks]).tolist())
    assert val_tracks and not train_tracks & val_tracks
    n_val = sum(len(t.val) for t in s.tasks)
    n_all = n_val + sum(len(t.train) for t in s.tasks)
    assert 0.09 <= n_val / n_all <= 0.14
    # every class gives at least one track to val
    assert all(set(t.val.y.tolist()) == set(t.labels) for t in s.tasks)
    # the stream's first task test set = the official test images of classes 0..7
    assert len(s.tasks[0].test) == int((a.y_test < 8).sum())
    assert 0.2 < s.channel_mean[0] < 0.6 and 0.1 < s.channel_std[0] < 0.4


@pytest.mark.realdata
@pytest.mark.slow  # real GTSRB file
def test_gtsrb_all_classes_five_tasks(gtsrb_arrays):
    plan = plan_stream(gtsrb_arrays, num_tasks=5, val_fraction=0.0)
    assert [len(t.classes) for t in plan.tasks] == [9, 9, 9, 8, 8]
    assert sorted(c for t in plan.tasks for c in t.classes) == list(range(43))
    assert sum(len(t.train_idx) for t in plan.tasks) == 39209
    assert sum(len(t.test_idx) for t in plan.tasks) == 12630
    assert plan.val_split == "none"

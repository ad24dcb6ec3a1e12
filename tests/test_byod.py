"""The user's own data: one ImageFolder tree (``--dataset imagefolder``) or one npz
(``--dataset npz``) cut into class-incremental tasks, the defaults that follow
its images (search/cli.py:resolve_data_defaults), class names in the result, and
one-line errors for what a user can get wrong. Trees and archives are built
here, tiny (Pillow, numpy); one slow test runs search/rerun.py end to end."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import ConfigError
from core.errors import UsageError
from core.protocol import StreamProtocol
from datasets import DatasetError
from datasets.builder import plan_stream
from datasets.imagefolder import load_imagefolder_arrays, scan_tree
from datasets.protocol import load_arrays, load_stream
from datasets.sources import load_npz
from search.cli import add_protocol_args, loop_config_from_args, resolve_data_defaults, stream_protocol_from_args

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# Ten digit classes named by word: sorted, the folder names are NOT in digit
# order, so the tests see that labels follow the sorted names (as torchvision's
# ImageFolder numbers them). Class k of the sorted list is grey level 10 + 24 k.
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SORTED = sorted(WORDS)
LEVEL = {name: 10 + 24 * k for k, name in enumerate(SORTED)}


def _save(path: Path, level: int, shape, rng, mode: str) -> None:
    pixels = np.clip(level + rng.integers(-2, 3, size=shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels, mode).save(path)


def write_tree(root: Path, train: int = 6, test: int = 2, side: int = 12, seed: int = 0) -> Path:
    """root/train/<word>/*.png and root/test/<word>/*.png, side x side grayscale."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("test", test)):
        for name in WORDS:
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                _save(d / f"{i}.png", LEVEL[name], (side, side), rng, "L")
    return root


def write_flat(root: Path, classes=("cat", "dog", "emu", "fox"), per_class: int = 10,
               size=(20, 14), mode: str = "RGB", seed: int = 0) -> Path:
    """root/<class>/*.png, no train/test: width x height images (odd, not square)."""
    rng = np.random.default_rng(seed)
    w, h = size
    for k, name in enumerate(classes):
        d = root / name
        d.mkdir(parents=True)
        for i in range(per_class):
            _save(d / f"{i:02d}.png", 30 + 50 * k, (h, w, 3) if mode == "RGB" else (h, w), rng, mode)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("byod") / "digits")


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    return write_flat(tmp_path_factory.mktemp("byod") / "animals")


def write_npz(path: Path, drop: tuple[str, ...] = (), classes: int = 6, per_class: int = 12, groups: bool = True) -> Path:
    """Grayscale N x H x W arrays (the channel axis is the loader's to add), 4
    groups of near-identical images per class, class names."""
    rng = np.random.default_rng(1)
    y_train = np.repeat(np.arange(classes), per_class)
    y_test = np.repeat(np.arange(classes), 3)
    arrays = {
        "x_train": (y_train[:, None, None] * 40 + rng.integers(0, 5, (len(y_train), 10, 10))).astype(np.uint8),
        "y_train": y_train,
        "x_test": (y_test[:, None, None] * 40 + rng.integers(0, 5, (len(y_test), 10, 10))).astype(np.uint8),
        "y_test": y_test,
        "class_names": np.array([f"shape{c}" for c in range(classes)]),
    }
    if groups:
        arrays["groups_train"] = y_train * 100 + np.arange(len(y_train)) % 4
    np.savez(path, **{k: v for k, v in arrays.items() if k not in drop})
    return path


def protocol(**values) -> StreamProtocol:
    return StreamProtocol.from_dict({"dataset": "imagefolder", "image_size": None, **values})


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_protocol_args(parser)
    return parser.parse_args(list(argv))


# --------------------------------------------------------------------------- imagefolder

def test_tree_is_cut_into_the_asked_tasks(tree):
    stream = load_stream(protocol(data_dir=str(tree), tasks=5))
    assert stream.num_tasks == 5 and stream.task_sizes() == [2] * 5
    # 12x12 grayscale: read as is, one channel.
    assert stream.image_shape == (1, 12, 12)
    assert stream.class_names == SORTED and stream.name == "digits"
    desc = stream.describe()
    assert desc["task_class_names"] == [SORTED[i:i + 2] for i in range(0, 10, 2)]
    assert desc["protocol"]["image_size"] == 12 and desc["protocol"]["test_fraction"] is None
    for task in stream.tasks:
        for split in (task.train, task.val, task.test):
            assert set(split.y.tolist()) == set(task.labels)
        assert len(task.train) + len(task.val) == 2 * 6 and len(task.test) == 2 * 2
        # Each image's grey level is its class's: the labels follow the sorted folder names.
        for x, y in zip(task.test.x, task.test.y):
            assert abs(float(x.float().mean()) - LEVEL[SORTED[int(y)]]) < 3


def test_tree_honours_the_protocol_options(tree):
    stream = load_stream(protocol(data_dir=str(tree), task_sizes=[4, 3, 3], class_order="seeded", stream_seed=5,
                                  image_size=8))
    assert stream.task_sizes() == [4, 3, 3] and stream.image_shape == (1, 8, 8)
    assert sorted(stream.class_order) == list(range(10)) and stream.class_order != list(range(10))
    # Names follow the seeded order, task by task.
    names = stream.describe()["task_class_names"]
    assert [n for task in names for n in task] == [SORTED[c] for c in stream.class_order]
    first = load_stream(protocol(data_dir=str(tree), classes=6, tasks=3))
    assert first.class_order == list(range(6)) and first.task_sizes() == [2, 2, 2]


def test_validation_split_is_disjoint_from_training(tree):
    arrays, size, fraction = load_imagefolder_arrays(tree)
    assert (size, fraction) == (12, None) and arrays.x_train.shape == (60, 12, 12, 1)
    plan = plan_stream(arrays, num_tasks=5, val_fraction=0.34, seed=0)
    assert plan.val_split == "stratified"
    for task in plan.tasks:
        assert len(task.val_idx) == 2 * 2  # round(0.34 * 6) per class
        assert np.intersect1d(task.train_idx, task.val_idx).size == 0
        assert len(task.train_idx) + len(task.val_idx) == 12


def test_flat_tree_is_split_by_the_test_fraction(flat):
    stream = load_stream(protocol(data_dir=str(flat), tasks=2, val_fraction=0.0))
    # 20x14 RGB: the longest side (20), squashed square, three channels.
    assert stream.image_shape == (3, 20, 20) and stream.class_names == ["cat", "dog", "emu", "fox"]
    assert stream.describe()["protocol"]["test_fraction"] == 0.2  # the default, recorded
    for task in stream.tasks:
        assert torch.bincount(task.test.y - task.label_offset).tolist() == [2, 2]  # round(0.2 * 10)
        assert torch.bincount(task.train.y - task.label_offset).tolist() == [8, 8]
    split = scan_tree(flat, test_fraction=0.3, seed=0)
    train, test = {p for p, _ in split.files["train"]}, {p for p, _ in split.files["test"]}
    assert not train & test and len(train | test) == 40 and len(test) == 4 * 3
    # Seeded by the stream seed: the same seed gives the same files, another seed others.
    assert {p for p, _ in scan_tree(flat, 0.3, seed=0).files["test"]} == test
    assert {p for p, _ in scan_tree(flat, 0.3, seed=1).files["test"]} != test


def test_channels_and_size_follow_the_images(tmp_path):
    # One grayscale class and one RGB class: RGB, the grey images repeated over 3 channels.
    mixed = write_flat(tmp_path / "mixed", classes=("grey",), per_class=3, size=(9, 9), mode="L")
    write_flat(tmp_path / "rgb", classes=("red",), per_class=3, size=(9, 9), mode="RGB")
    (tmp_path / "rgb" / "red").rename(mixed / "red")
    arrays, size, _ = load_imagefolder_arrays(mixed, test_fraction=0.34)
    assert size == 9 and arrays.x_train.shape[1:] == (9, 9, 3)
    grey = arrays.x_train[arrays.y_train == 0]
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 0], grey[..., 2])
    # Images larger than 64 px are read at 64 unless an image size is asked for.
    big = write_flat(tmp_path / "big", classes=("a", "b"), per_class=2, size=(100, 80), mode="L")
    assert load_imagefolder_arrays(big)[1] == 64
    assert load_imagefolder_arrays(big, image_size=32)[0].x_test.shape[1:] == (32, 32, 1)
    # 16-bit grayscale keeps its high byte (Pillow's own conversion would clip to white).
    deep = tmp_path / "deep"
    for name, level in (("dark", 4000), ("light", 60000)):
        (deep / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((6, 6), level, dtype=np.uint16)).save(deep / name / f"{i}.png")
    arrays, _, _ = load_imagefolder_arrays(deep, test_fraction=0.5)
    assert arrays.x_train.shape[-1] == 1
    assert sorted(int(v) for v in arrays.x_train[:, 0, 0, 0]) == [4000 >> 8, 60000 >> 8]


# --------------------------------------------------------------------------- npz

def test_npz_stream_with_groups_and_names(tmp_path):
    path = write_npz(tmp_path / "shapes.npz")
    # The folder holding one .npz is as good as the file.
    for where in (path, tmp_path):
        stream = load_stream(StreamProtocol.from_dict({"dataset": "npz", "data_dir": str(where), "tasks": 3}))
        assert stream.name == "shapes" and stream.task_sizes() == [2, 2, 2]
        assert stream.image_shape == (1, 10, 10)
        assert stream.describe()["task_class_names"] == [["shape0", "shape1"], ["shape2", "shape3"],
                                                        ["shape4", "shape5"]]
        assert stream.describe()["val_split"] == "group"
    arrays = load_npz(path)
    plan = plan_stream(arrays, num_tasks=3, val_fraction=0.25, seed=0)
    groups = arrays.groups_train
    for task in plan.tasks:
        assert not set(groups[task.train_idx]) & set(groups[task.val_idx])  # no group on both sides
    # Without groups_train: a stratified split; without class_names: no names.
    bare = write_npz(tmp_path / "bare.npz", drop=("class_names",), groups=False)
    stream = load_stream(StreamProtocol.from_dict({"dataset": "npz", "data_dir": str(bare), "tasks": 2}))
    assert stream.describe()["val_split"] == "stratified" and stream.describe()["task_class_names"] is None


def test_built_in_names_reach_the_description():
    """Built-in datasets with names (GTSRB, digits; synthetic here) record them too."""
    stream = load_stream(StreamProtocol.from_dict({"dataset": "synthetic", "tasks": 3, "class_order": "seeded"}))
    names = stream.describe()["task_class_names"]
    assert names == [[f"class {c}" for c in task] for task in stream.describe()["task_classes"]]


# --------------------------------------------------------------------------- defaults

def test_defaults_follow_the_images(tree, capsys):
    args = parse("--dataset", "imagefolder", "--data-dir", str(tree), "--tasks", "5")
    stream = load_stream(stream_protocol_from_args(args))
    loop = resolve_data_defaults(args, loop_config_from_args(args), stream)
    assert (loop.backbone, loop.augment, loop.epochs, loop.batch_size) == ("simplecnn", "crop", 5, 64)
    said = capsys.readouterr().err
    assert said.count("\n") == 1
    assert "12x12 grayscale, 10 classes in 5 tasks" in said and "simplecnn" in said and "no flips" in said
    # An explicit flag wins, and is not announced as a default.
    args = parse("--dataset", "imagefolder", "--data-dir", str(tree), "--tasks", "5", "--augment", "crop+flip",
                 "--epochs", "2")
    loop = resolve_data_defaults(args, loop_config_from_args(args), stream)
    assert (loop.augment, loop.epochs, loop.backbone) == ("crop+flip", 2, "simplecnn")
    said = capsys.readouterr().err
    assert "augmentation" not in said and "epochs" not in said and "--augment" not in said
    # Everything given: nothing to say.
    args = parse("--dataset", "imagefolder", "--data-dir", str(tree), "--tasks", "5", "--augment", "none",
                 "--epochs", "1", "--backbone", "resnet32", "--batch-size", "8")
    loop = resolve_data_defaults(args, loop_config_from_args(args), stream)
    assert loop.backbone == "resnet32" and capsys.readouterr().err == ""


def test_large_images_get_vgg16_and_other_datasets_keep_theirs(tmp_path, capsys):
    big = write_flat(tmp_path / "big", classes=("a", "b"), per_class=2, size=(100, 100), mode="RGB")
    args = parse("--dataset", "imagefolder", "--data-dir", str(big), "--tasks", "2", "--image-size", "96")
    stream = load_stream(stream_protocol_from_args(args))
    loop = resolve_data_defaults(args, loop_config_from_args(args), stream)
    assert stream.image_shape == (3, 96, 96)
    assert (loop.backbone, loop.augment, loop.batch_size) == ("vgg16", "crop", 32)
    assert "over 64 px" in capsys.readouterr().err
    args = parse("--dataset", "digits")
    loop = loop_config_from_args(args)
    assert resolve_data_defaults(args, loop, None) is loop and capsys.readouterr().err == ""


# --------------------------------------------------------------------------- mistakes

def _one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


def test_tree_mistakes_are_one_line_dataset_errors(tmp_path, tree):
    half = tmp_path / "half"
    (half / "train" / "a").mkdir(parents=True)
    empty = write_flat(tmp_path / "empty", classes=("a",), per_class=2)
    (empty / "b").mkdir()
    single = write_flat(tmp_path / "single", classes=("a", "b"), per_class=1)
    for root, fraction, words in (
        (tmp_path / "nope", None, "does not exist"),
        (half, None, "has train/ but no test/"),
        (empty, None, "class folder holds no images"),
        (tree, 0.2, "has train/ and test/, so its test split is given"),
        (single, None, "needs at least 2 per class"),
        (tmp_path / "half" / "train" / "a", None, "no class folders"),
    ):
        with pytest.raises(DatasetError) as err:
            load_imagefolder_arrays(root, test_fraction=fraction)
        assert words in _one_line(err), (root, str(err.value))


def test_npz_mistakes_are_one_line_dataset_errors(tmp_path):
    for name, drop, words in (("no_test_labels", ("y_test",), "missing array(s) y_test"),
                              ("no_images", ("x_train",), "missing array(s) x_train")):
        path = write_npz(tmp_path / f"{name}.npz", drop=drop)
        with pytest.raises(DatasetError) as err:
            load_npz(path)
        assert words in _one_line(err)
    good = write_npz(tmp_path / "good.npz").read_bytes()
    truncated = tmp_path / "cut" / "truncated.npz"
    truncated.parent.mkdir()
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError) as err:
        load_npz(truncated)
    assert "truncated or corrupt" in _one_line(err)
    with pytest.raises(DatasetError) as err:
        load_npz(tmp_path)  # several .npz files: which one?
    assert ".npz files" in _one_line(err)
    with pytest.raises(DatasetError) as err:
        load_npz(tmp_path / "absent.npz")
    assert "does not exist" in _one_line(err)
    np.savez(tmp_path / "cut" / "wrong.npz", x_train=np.zeros((4, 2), np.uint8), y_train=np.zeros(4, np.int64),
             x_test=np.zeros((2, 2), np.uint8), y_test=np.zeros(2, np.int64))
    with pytest.raises(DatasetError) as err:
        load_npz(tmp_path / "cut" / "wrong.npz")
    assert "needs N x H x W x C" in _one_line(err)


def test_protocol_and_command_line_mistakes(tree, flat):
    for values, words in (
        ({"dataset": "imagefolder", "tasks": 5}, "needs data_dir"),
        ({"dataset": "gtsrb", "tasks": 5, "test_fraction": 0.2}, "test_fraction is only used with dataset 'imagefolder'"),
        ({"dataset": "digits", "tasks": 5, "image_size": None}, "only for dataset 'imagefolder'"),
        ({"dataset": "imagefolder", "tasks": 5, "data_dir": "x", "test_fraction": 0}, "below its minimum"),
    ):
        with pytest.raises(ConfigError) as err:
            StreamProtocol.from_dict(values)
        assert words in _one_line(err)
    for argv, words in (
        (["--dataset", "imagefolder", "--tasks", "5"], "needs --data-dir ROOT"),
        (["--dataset", "npz", "--tasks", "5"], "needs --data-dir FILE.npz"),
        (["--dataset", "imagefolder", "--data-dir", str(tree)], "--tasks N or --task-sizes"),
        (["--dataset", "digits", "--test-fraction", "0.2"], "only used with --dataset imagefolder"),
        (["--dataset", "npz", "--data-dir", "x.npz", "--tasks", "2", "--image-size", "32"], "keep their stored size"),
        (["--dataset", "folders", "--data-dir", str(tree)], "--dataset imagefolder --data-dir ROOT --tasks N"),
    ):
        with pytest.raises(UsageError) as err:
            stream_protocol_from_args(parse(*argv))
        assert words in _one_line(err)
    # Both train/ and test/ and a fraction: refused once the tree is looked at.
    with pytest.raises(DatasetError, match="drop the test fraction"):
        load_arrays(stream_protocol_from_args(parse("--dataset", "imagefolder", "--data-dir", str(tree),
                                                    "--tasks", "5", "--test-fraction", "0.3")))
    # The fraction is recorded where it was used.
    p = stream_protocol_from_args(parse("--dataset", "imagefolder", "--data-dir", str(flat), "--tasks", "2",
                                        "--test-fraction", "0.3"))
    assert load_arrays(p)[1].test_fraction == 0.3


# --------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_direct_run_on_a_tree_records_names_and_defaults(tree, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(REPO / "search" / "rerun.py"), "--method", "finetune", "--dataset", "imagefolder",
         "--data-dir", str(tree), "--tasks", "5", "--epochs", "1", "--threads", "1", "--quiet", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "imagefolder 'digits': 12x12 grayscale, 10 classes in 5 tasks" in proc.stderr
    result = json.loads((out / "seed0" / "result.json").read_text())
    assert result["status"] == "completed" and len(result["acc_class_il"]) == 5
    assert result["protocol"]["backbone"] == "simplecnn" and result["protocol"]["augment"] == "crop"
    assert result["protocol"]["epochs"] == 1  # given, so not the default 5
    stream = result["stream"]
    assert stream["image_shape"] == [1, 12, 12] and stream["name"] == "digits"
    assert stream["task_class_names"] == [SORTED[i:i + 2] for i in range(0, 10, 2)]
    assert stream["protocol"]["dataset"] == "imagefolder" and stream["protocol"]["image_size"] == 12
    assert stream["test_sizes"] == [4] * 5 and stream["val_sizes"] == [0] * 5  # train+val -> test

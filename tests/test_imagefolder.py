"""ImageFolder task sequences (datasets/imagefolder.py) on tiny fake trees of PNGs,
PackNet on such a stream, and the VGG-16 backbone the PackNet paper uses."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import strategies  # noqa: F401  (registration)
from datasets import DatasetError
from datasets.imagefolder import build_folder_stream, load_folder_arrays
from strategies.loop import LoopConfig, make_strategy, run

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


# Two "datasets": 3 bird classes (PNG) and 2 car classes (JPEG, the first image
# of each folder large enough for reduced-scale JPEG decoding), each a solid
# colour plus a little noise, stored at odd sizes so resizing is exercised.
TREES = {
    "birds": {"train": 5, "test": 2, "ext": "png",
              "classes": {"crow": (20, 20, 20), "jay": (40, 80, 220), "robin": (220, 60, 30)}},
    "cars": {"train": 4, "test": 3, "ext": "jpg", "classes": {"audi": (240, 240, 240), "fiat": (30, 200, 40)}},
}


def _write_tree(base, name, spec, seed=0):
    rng = np.random.default_rng(seed)
    root = base / name
    for split in ("train", "test"):
        for cls, colour in spec["classes"].items():
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(spec[split]):
                ext = spec.get("ext", "png")
                h, w = (160, 120) if ext == "jpg" and i == 0 else (20 + i, 12 + 2 * i)
                img = np.clip(np.array(colour)[None, None, :] + rng.integers(-3, 4, size=(h, w, 3)), 0, 255)
                Image.fromarray(img.astype(np.uint8), "RGB").save(d / f"{i:03d}.{ext}", quality=95)
    return root


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("folders")
    return [_write_tree(base, name, spec, seed=k) for k, (name, spec) in enumerate(TREES.items())]


def test_one_task_per_root_with_disjoint_labels(roots):
    stream = build_folder_stream(roots, image_size=16, val_fraction=0.4, seed=0)
    assert stream.num_tasks == 2 and stream.task_sizes() == [3, 2]
    assert stream.image_shape == (3, 16, 16)
    assert stream.class_names == ["birds/crow", "birds/jay", "birds/robin", "cars/audi", "cars/fiat"]
    t0, t1 = stream.tasks
    assert (t0.label_offset, t1.label_offset) == (0, 3)
    for task, spec in zip(stream.tasks, TREES.values()):
        own = set(task.labels)
        for split in (task.train, task.val, task.test):
            assert set(split.y.tolist()) == own
            assert split.x.dtype == torch.uint8 and split.x.shape[1:] == (3, 16, 16)
        n_cls = len(spec["classes"])
        assert len(task.train) + len(task.val) == n_cls * spec["train"]
        assert len(task.test) == n_cls * spec["test"]
    assert set(t0.train.y.tolist()).isdisjoint(t1.train.y.tolist())
    # The pixels are the class's colour (solid colour +-3 survives bilinear resizing).
    colours = [c for spec in TREES.values() for c in spec["classes"].values()]
    for task in stream.tasks:
        for x, y in zip(task.test.x, task.test.y):
            assert np.abs(x.float().mean(dim=(1, 2)).numpy() - np.array(colours[int(y)])).max() < 4
    assert stream.describe()["image_size"] == 16 and len(stream.describe()["roots"]) == 2


def test_validation_split_is_stratified_and_seeded(roots):
    a = build_folder_stream(roots, image_size=8, val_fraction=0.4, seed=3)
    b = build_folder_stream(roots, image_size=8, val_fraction=0.4, seed=3)
    for task, spec in zip(a.tasks, TREES.values()):
        k = round(0.4 * spec["train"])  # per class: 5 -> 2, 4 -> 2
        counts = torch.bincount(task.val.y - task.label_offset, minlength=task.num_classes)
        assert counts.tolist() == [k] * task.num_classes
    for ta, tb in zip(a.tasks, b.tasks):
        assert torch.equal(ta.val.x, tb.val.x) and torch.equal(ta.train.y, tb.train.y)
    none = build_folder_stream(roots, image_size=8, val_fraction=0.0)
    assert all(len(t.val) == 0 for t in none.tasks)


def test_center_crop_and_single_root(roots):
    stream = build_folder_stream(roots[1], image_size=10, resize="center_crop", val_fraction=0.25)
    assert stream.num_tasks == 1 and stream.image_shape == (3, 10, 10)
    arrays, sizes = load_folder_arrays(roots, image_size=6)
    assert sizes == [3, 2] and arrays.x_train.shape[1:] == (6, 6, 3)


def test_problems_are_one_line_dataset_errors(tmp_path, roots):
    cases = []
    cases.append(([tmp_path / "nope"], "does not exist"))
    no_test = tmp_path / "no_test"
    (no_test / "train" / "a").mkdir(parents=True)
    cases.append(([no_test], "no test/ folder"))
    empty = _write_tree(tmp_path, "empty", {"train": 1, "test": 1, "classes": {"a": (0, 0, 0)}})
    (empty / "train" / "b").mkdir()
    (empty / "test" / "b").mkdir()
    (empty / "train" / "b" / "notes.txt").write_text("not an image")
    cases.append(([empty], "holds no images"))
    mismatch = _write_tree(tmp_path, "mismatch", {"train": 1, "test": 1, "classes": {"a": (0, 0, 0)}})
    (mismatch / "train" / "c").mkdir()
    cases.append(([mismatch], "same class folders"))
    broken = _write_tree(tmp_path, "broken", {"train": 1, "test": 1, "classes": {"a": (0, 0, 0)}})
    (broken / "train" / "a" / "bad.jpg").write_bytes(b"not a jpeg")
    cases.append(([broken], "cannot read image"))
    cases.append(([roots[0], roots[0]], "more than once"))
    cases.append(([], "no dataset roots"))
    for bad_roots, words in cases:
        with pytest.raises(DatasetError) as err:
            build_folder_stream(bad_roots, image_size=8)
        assert words in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DatasetError):
        build_folder_stream(roots, image_size=0)


def test_packnet_runs_on_a_folder_stream(roots):
    stream = build_folder_stream(roots, image_size=16, val_fraction=0.25, seed=0)
    cfg = LoopConfig(epochs=2, batch_size=8, augment="crop", eval_split="val", seed=0)
    strategy = make_strategy("packnet", {"lr": 0.05}, stream, cfg)
    result = run(strategy, stream, cfg, log=None)
    assert result.status == "completed"
    assert len(result.acc_task_il) == 2 and result.acc_task_il[0][1] is None
    assert result.acc_task_il[1][0] == result.acc_task_il[0][0]
    assert all(v is None for row in result.to_dict()["acc_class_il"] for v in row)
    assert result.stream["roots"] == [str(r) for r in roots]


def test_vgg16_backbone_builds_without_cached_weights(tmp_path, monkeypatch):
    from datasets._tv import import_torchvision
    from strategies.networks import build_backbone

    try:
        import_torchvision()
    except ImportError as exc:
        pytest.skip(f"torchvision not importable: {exc}")
    # An empty hub cache: asking for ImageNet weights must fall back to random init.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    net = build_backbone("vgg16", 3, pretrained=True)
    assert net.pretrained_loaded is False
    assert net.out_dim == 512
    with torch.no_grad():
        assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 512)


def _rerun(*args, cwd):
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parent.parent / "search" / "rerun.py"
    return subprocess.run([sys.executable, str(script), *args, "--quiet", "--threads", "1"],
                          capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.mark.slow  # subprocess: search/rerun.py
def test_cli_runs_packnet_on_folders_with_vgg16(roots, tmp_path):
    """The PackNet sequence from the command line: one task per tree, vgg16, task-IL."""
    import json
    out = tmp_path / "out"
    proc = _rerun("--method", "packnet", "--dataset", "folders", "--folders", ",".join(map(str, roots)),
                  "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--set", "retrain_epochs=0",
                  "--seeds", "1", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("vgg16: random init") == 1  # said once, although each task builds nothing new
    result = json.loads((out / "seed0" / "result.json").read_text())
    assert result["protocol"]["backbone"] == "vgg16" and result["task_incremental_only"]
    assert [len(c) for c in result["stream"]["task_classes"]] == [3, 2]  # birds, then cars
    assert result["stream"]["image_shape"] == [3, 32, 32]
    assert len(result["acc_task_il"]) == 2
    assert result["acc_task_il"][1][0] == result["acc_task_il"][0][0]  # PackNet: task 1 frozen


@pytest.mark.slow  # subprocess: search/rerun.py, one per case
def test_cli_folder_mistakes_are_one_line_errors(roots, tmp_path):
    both = ",".join(map(str, roots))
    for args, message in [
        (["--dataset", "folders"], "needs --folders"),
        (["--dataset", "folders", "--data-dir", str(roots[0])], "use --dataset imagefolder"),
        (["--dataset", "folders", "--folders", str(roots[0]), "--tasks", "2"], "the tasks are the folders"),
        (["--dataset", "folders", "--folders", str(roots[0])], "one root is a single task"),
        (["--dataset", "folders", "--folders", both, "--image-size", "16"], "too small for vgg16"),
        (["--dataset", "gtsrb", "--folders", str(roots[0])], "only used with --dataset folders"),
        (["--dataset", "folders", "--folders", f"{roots[0]},{tmp_path / 'nope'}"], "nope"),
    ]:
        proc = _rerun("--method", "packnet", *args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, (args, proc.stderr)

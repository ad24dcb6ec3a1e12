"""ImageFolder trees: one tree per task (``folders``) or one tree cut into tasks (``imagefolder``).

The PackNet protocol (Mallya & Lazebnik, CVPR 2018, §4) adds whole datasets to
one network in sequence, e.g. CUB-200 -> Stanford Cars -> Oxford Flowers. Each
dataset root is laid out as torchvision's ImageFolder expects, with a fixed
train/test split:

    <root>/train/<class>/*.jpg
    <root>/test/<class>/*.jpg

``build_folder_stream(roots, image_size)`` reads every image (Pillow, RGB),
resizes it to ``image_size`` x ``image_size`` and returns a ``Stream`` with one
task per root, in the order given:

- labels are disjoint across tasks: root t's classes (its ``train`` class
  folders, sorted by name) get the stream labels right after root t-1's, so the
  task-IL evaluation of the loop sees each dataset as its own label range;
- each task's validation split is carved from its training images, stratified
  per class and seeded (``val_fraction``), by the same builder every other
  dataset goes through (``datasets.builder.build_stream`` with one task per
  root), so splits, shuffling, relabelling checks and channel statistics are
  the project's usual ones.

``load_imagefolder_arrays(root, ...)`` reads ONE tree as a dataset of its own
(the user's data, ``--dataset imagefolder``), which the builder then cuts into
class-incremental tasks like any other dataset. The tree is either laid out as
above (``train/`` and ``test/``), or flat, ``<root>/<class>/*.png``: then each
class folder's files are split into train and test, ``test_fraction`` of them
(default 0.2) to test, stratified per class and seeded by the stream seed. Its
classes are numbered in the sorted order of their folder names (as
torchvision's ImageFolder does) and named by them. Two things follow the images
rather than a fixed setting: the size (``image_size=None``: the longest side
found, at most 64, so a tree of 28x28 digits is read as is) and the channels
(1 when every image is grayscale, else RGB, grayscale images then repeated over
the three channels).

Resizing: ``squash`` (default) resizes the whole image to a square, ignoring the
aspect ratio; ``center_crop`` resizes the shorter side to ``image_size`` and
crops the centre square (the paper's test-time view; its train-time random crops
are the loop's ``crop`` augmentation here). JPEGs are decoded at reduced scale
when they are much larger than the target (Pillow's ``draft``), which is several
times faster and never goes below ``image_size``.

Everything a user can fix (missing root, no train/ or test/, a class folder
without images, class folders that differ between train/ and test/, an
unreadable image) is a one-line ``DatasetError``. Pillow is imported only when
images are read.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .arrays import DatasetArrays
from .builder import build_stream
from .errors import DatasetError
from .stream import Stream

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
RESIZE_MODES = ("squash", "center_crop")
SPLITS = ("train", "test")
# imagefolder: the test share of a flat tree's class folders when none is given,
# and the largest side an image_size=None tree is read at (bigger images are
# shrunk to it: CPU-sized inputs; --image-size asks for more).
DEFAULT_TEST_FRACTION = 0.2
AUTO_IMAGE_SIZE_CAP = 64
# Pillow modes that hold one grey channel ("1" is bilevel, "I;16*" 16-bit).
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
# Generator purpose of the flat tree's test split (the builder uses 0..2 for the
# class order, the validation split and the shuffle: a separate draw).
_RNG_TEST_SPLIT = 3


@dataclass
class FolderTask:
    """The files of one root: sorted class names and, per split, (path, class index).
    ``test_fraction`` is the share split off a flat tree (None: train/ and test/ given)."""

    root: Path
    classes: list[str]
    files: dict[str, list[tuple[Path, int]]]
    test_fraction: float | None = None


def _is_hidden(p: Path) -> bool:
    return p.name.startswith(".")


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not _is_hidden(d))


def _images_in(class_dir: Path) -> list[Path]:
    return sorted(
        f for f in class_dir.iterdir()
        if f.is_file() and not _is_hidden(f) and f.suffix.lower() in IMAGE_EXTENSIONS
    )


def _class_images(class_dir: Path) -> list[Path]:
    images = _images_in(class_dir)
    if not images:
        raise DatasetError(f"{class_dir}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return images


def _existing_root(root: str | os.PathLike) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist or is not a folder")
    return root


def scan_root(root: str | os.PathLike) -> FolderTask:
    """List one ImageFolder root with train/ and test/ (no image is opened)."""
    root = _existing_root(root)
    split_dirs = {}
    for split in SPLITS:
        d = root / split
        if not d.is_dir():
            raise DatasetError(f"{root}: no {split}/ folder (expected {root}/{split}/<class>/<image>)")
        split_dirs[split] = d
    classes = _class_dirs(split_dirs["train"])
    if not classes:
        raise DatasetError(f"{split_dirs['train']}: no class folders (expected train/<class>/<image>)")
    test_classes = _class_dirs(split_dirs["test"])
    if test_classes != classes:
        only_train = sorted(set(classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(classes))
        what = (f"class {only_train[0]!r} is in train/ but not in test/" if only_train
                else f"class {only_test[0]!r} is in test/ but not in train/")
        raise DatasetError(f"{root}: train/ and test/ must have the same class folders; {what}")
    files: dict[str, list[tuple[Path, int]]] = {}
    for split, d in split_dirs.items():
        entries: list[tuple[Path, int]] = []
        for k, name in enumerate(classes):
            entries.extend((p, k) for p in _class_images(d / name))
        files[split] = entries
    return FolderTask(root=root, classes=classes, files=files)


def scan_tree(root: str | os.PathLike, test_fraction: float | None = None, seed: int = 0) -> FolderTask:
    """List one tree that is a whole dataset (``imagefolder``; no image is opened).

    With ``train/`` and ``test/`` folders, as ``scan_root``; a ``test_fraction``
    is then refused (the split is given, a fraction would silently do nothing).
    Without them the class folders are ``root``'s subfolders and each is split:
    ``round(test_fraction * n)`` of its n files to test (at least one, never
    all), drawn with a generator keyed on (seed, class index), so a class's test
    files do not depend on the other classes."""
    root = _existing_root(root)
    given = [split for split in SPLITS if (root / split).is_dir()]
    if given:
        if len(given) == 1:
            missing = "test" if given == ["train"] else "train"
            raise DatasetError(
                f"{root}: has {given[0]}/ but no {missing}/ (expected {root}/train/<class>/ and "
                f"{root}/test/<class>/, or the class folders directly in {root}, split by a test fraction)"
            )
        if test_fraction is not None:
            raise DatasetError(
                f"{root}: has train/ and test/, so its test split is given; drop the test fraction (--test-fraction)"
            )
        return scan_root(root)
    fraction = DEFAULT_TEST_FRACTION if test_fraction is None else float(test_fraction)
    if not 0.0 < fraction < 1.0:
        raise DatasetError(f"test fraction must be in (0, 1), got {test_fraction!r}")
    classes = _class_dirs(root)
    if not classes:
        raise DatasetError(
            f"{root}: no class folders (expected {root}/<class>/<image>, or {root}/train/<class>/ and {root}/test/<class>/)"
        )
    files: dict[str, list[tuple[Path, int]]] = {split: [] for split in SPLITS}
    for k, name in enumerate(classes):
        images = _class_images(root / name)
        n = len(images)
        if n < 2:
            raise DatasetError(f"{root / name}: one image; splitting off a test share needs at least 2 per class")
        n_test = min(max(int(round(fraction * n)), 1), n - 1)
        is_test = np.zeros(n, dtype=bool)
        is_test[np.random.default_rng([seed, _RNG_TEST_SPLIT, k]).permutation(n)[:n_test]] = True
        files["train"].extend((p, k) for p, t in zip(images, is_test) if not t)
        files["test"].extend((p, k) for p, t in zip(images, is_test) if t)
    return FolderTask(root=root, classes=classes, files=files, test_fraction=fraction)


def _load_image(path: Path, size: int, resize: str, mode: str = "RGB") -> np.ndarray:
    """One image as size x size x C uint8 (C = 3 for mode RGB, 1 for mode L)."""
    from PIL import Image, UnidentifiedImageError  # lazy: only when images are read

    try:
        with Image.open(path) as raw:
            # JPEG only: decode at the smallest 1/2^k scale that is still >= size.
            raw.draft(mode, (size, size))
            if mode == "L" and raw.mode.startswith("I;16"):
                # Pillow's I;16 -> L conversion clips at 255, which would turn a
                # 16-bit scan nearly white; keep the high byte instead.
                img = Image.fromarray((np.asarray(raw, dtype=np.uint16) >> 8).astype(np.uint8), "L")
            else:
                img = raw.convert(mode)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read image ({exc})") from exc
    if resize == "center_crop":
        w, h = img.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    else:
        # Pillow returns a plain copy when the size is already right.
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8).reshape(size, size, -1)


def _for_each(n: int, fn, workers: int) -> None:
    """``fn(i)`` for i < n, on threads when it pays: Pillow releases the GIL
    while it opens, decodes and resizes."""
    if workers <= 1 or n < 64:
        for i in range(n):
            fn(i)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(fn, range(n), chunksize=32):
                pass


def _read_images(entries: list[tuple[Path, int]], size: int, resize: str, workers: int,
                 mode: str = "RGB") -> np.ndarray:
    """All images of ``entries`` into one preallocated N x size x size x C array
    (C = 3 for mode RGB, 1 for mode L)."""
    x = np.empty((len(entries), size, size, 1 if mode == "L" else 3), dtype=np.uint8)

    def load(i: int) -> None:
        x[i] = _load_image(entries[i][0], size, resize, mode)

    _for_each(len(entries), load, workers)
    return x


def _probe_images(paths: list[Path], workers: int) -> tuple[int, bool]:
    """The longest side over ``paths`` and whether every one is grayscale, from
    the files' headers (Pillow decodes no pixels until asked)."""
    from PIL import Image, UnidentifiedImageError

    sides = np.zeros(len(paths), dtype=np.int64)
    gray = np.zeros(len(paths), dtype=bool)

    def probe(i: int) -> None:
        try:
            with Image.open(paths[i]) as raw:
                sides[i] = max(raw.size)
                gray[i] = raw.mode in GRAY_MODES
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise DatasetError(f"{paths[i]}: cannot read image ({exc})") from exc

    _for_each(len(paths), probe, workers)
    return int(sides.max()), bool(gray.all())


def load_folder_arrays(
    roots: Sequence[str | os.PathLike],
    image_size: int,
    resize: str = "squash",
    workers: int = 0,
) -> tuple[DatasetArrays, list[int]]:
    """All roots as one ``DatasetArrays`` with disjoint class ids (root t's
    classes numbered after root t-1's) and the number of classes per root."""
    if isinstance(roots, (str, os.PathLike)):
        roots = [roots]
    roots = list(roots)
    if not roots:
        raise DatasetError("no dataset roots given (one ImageFolder root per task)")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise DatasetError(f"image_size must be a positive integer, got {image_size!r}")
    if resize not in RESIZE_MODES:
        raise DatasetError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    resolved = [Path(r).resolve() for r in roots]
    dups = sorted({str(r) for r in resolved if resolved.count(r) > 1})
    if dups:
        raise DatasetError(f"dataset root {dups[0]} is given more than once")
    if workers <= 0:
        workers = min(8, os.cpu_count() or 1)

    scanned = [scan_root(r) for r in roots]
    entries: dict[str, list[tuple[Path, int]]] = {s: [] for s in SPLITS}
    class_names: list[str] = []
    sizes: list[int] = []
    for ft in scanned:
        offset = len(class_names)
        for split in SPLITS:
            entries[split].extend((p, offset + k) for p, k in ft.files[split])
        class_names.extend(f"{ft.root.name}/{c}" for c in ft.classes)
        sizes.append(len(ft.classes))

    arrays = {}
    for split in SPLITS:
        arrays[f"x_{split}"] = _read_images(entries[split], image_size, resize, workers)
        arrays[f"y_{split}"] = np.fromiter((k for _, k in entries[split]), dtype=np.int64, count=len(entries[split]))
    name = "+".join(ft.root.name for ft in scanned)
    return DatasetArrays(name=name, class_names=class_names, **arrays), sizes


def load_imagefolder_arrays(
    root: str | os.PathLike,
    image_size: int | None = None,
    test_fraction: float | None = None,
    seed: int = 0,
    resize: str = "squash",
    workers: int = 0,
) -> tuple[DatasetArrays, int, float | None]:
    """One ImageFolder tree as a dataset of its own (see the module docstring):
    its arrays (class names = folder names, 1 channel when every image is
    grayscale), the image size used (``image_size=None``: the longest side
    found, at most ``AUTO_IMAGE_SIZE_CAP``) and the test fraction used (None
    when the tree has train/ and test/)."""
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise DatasetError(f"image_size must be a positive integer or None, got {image_size!r}")
    if resize not in RESIZE_MODES:
        raise DatasetError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    if workers <= 0:
        workers = min(8, os.cpu_count() or 1)
    tree = scan_tree(root, test_fraction, seed)
    every = tree.files["train"] + tree.files["test"]
    longest, all_gray = _probe_images([p for p, _ in every], workers)
    size = min(longest, AUTO_IMAGE_SIZE_CAP) if image_size is None else image_size
    mode = "L" if all_gray else "RGB"
    arrays = {}
    for split in SPLITS:
        entries = tree.files[split]
        arrays[f"x_{split}"] = _read_images(entries, size, resize, workers, mode)
        arrays[f"y_{split}"] = np.fromiter((k for _, k in entries), dtype=np.int64, count=len(entries))
    name = tree.root.resolve().name or str(tree.root)
    return DatasetArrays(name=name, class_names=list(tree.classes), **arrays), size, tree.test_fraction


def build_folder_stream(
    roots: Sequence[str | os.PathLike],
    image_size: int,
    val_fraction: float = 0.1,
    seed: int = 0,
    resize: str = "squash",
    workers: int = 0,
) -> Stream:
    """One task per ImageFolder root, labels disjoint across tasks, a stratified
    seeded validation split per task (see the module docstring)."""
    arrays, sizes = load_folder_arrays(roots, image_size, resize=resize, workers=workers)
    # Natural order = class ids = root order, so task t is exactly root t.
    stream = build_stream(arrays, task_sizes=sizes, class_order="natural", seed=seed, val_fraction=val_fraction)
    stream.info.update({
        "roots": [str(Path(r)) for r in ([roots] if isinstance(roots, (str, os.PathLike)) else roots)],
        "image_size": image_size,
        "resize": resize,
    })
    return stream

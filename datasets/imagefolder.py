"""Task sequences from ImageFolder trees: one dataset = one task.

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


@dataclass
class FolderTask:
    """The files of one root: sorted class names and, per split, (path, class index)."""

    root: Path
    classes: list[str]
    files: dict[str, list[tuple[Path, int]]]


def _is_hidden(p: Path) -> bool:
    return p.name.startswith(".")


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not _is_hidden(d))


def _images_in(class_dir: Path) -> list[Path]:
    return sorted(
        f for f in class_dir.iterdir()
        if f.is_file() and not _is_hidden(f) and f.suffix.lower() in IMAGE_EXTENSIONS
    )


def scan_root(root: str | os.PathLike) -> FolderTask:
    """List one ImageFolder root (no image is opened)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist or is not a folder")
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
            images = _images_in(d / name)
            if not images:
                raise DatasetError(
                    f"{d / name}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)})"
                )
            entries.extend((p, k) for p in images)
        files[split] = entries
    return FolderTask(root=root, classes=classes, files=files)


def _load_image(path: Path, size: int, resize: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError  # lazy: only when images are read

    try:
        with Image.open(path) as raw:
            # JPEG only: decode at the smallest 1/2^k scale that is still >= size.
            raw.draft("RGB", (size, size))
            img = raw.convert("RGB")
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
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def _read_images(entries: list[tuple[Path, int]], size: int, resize: str, workers: int) -> np.ndarray:
    """All images of ``entries`` into one preallocated N x size x size x 3 array.
    Threads help: Pillow releases the GIL while decoding and resizing."""
    x = np.empty((len(entries), size, size, 3), dtype=np.uint8)

    def load(i: int) -> None:
        x[i] = _load_image(entries[i][0], size, resize)

    if workers <= 1 or len(entries) < 64:
        for i in range(len(entries)):
            load(i)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(load, range(len(entries)), chunksize=32):
                pass
    return x


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

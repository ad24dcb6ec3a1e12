"""Dataset sources: each returns a validated ``DatasetArrays``.

- ``load_gtsrb``: GTSRB (Stallkamp et al., IJCNN 2011), 43 traffic-sign classes.
  Preferred form is the project's ``gtsrb32.npz`` (official Final_Training /
  Final_Test images cropped to the official ROI and resized to 32x32 bilinear,
  with ``track_train = class * 10000 + track``; see ``shared/data/README.md``).
  Fallbacks: torchvision's GTSRB folder layout (resized the same way here), then
  torchvision's download (needs a network).
- ``load_cifar100``: a local ``cifar100.npz`` or torchvision's CIFAR100 (folder
  or download).
- ``load_digits``: scikit-learn's 8x8 handwritten digits (ships inside
  scikit-learn, so the main command runs with no network and no data files).
- ``make_synthetic``: tiny generated images for tests (learnable in an epoch or
  two; with groups so grouped validation can be tested).
- ``load_npz``: the user's own arrays in one npz (``x_train``, ``y_train``,
  ``x_test``, ``y_test``; optional ``groups_train`` and ``class_names``), checked
  by the same reader as the project's own files.

Files are looked for in ``find_data_dir`` order: the explicit ``data_dir``
argument (``--data-dir``), then ``$CL_DATA_DIR``, then ``./data``. Everything a
user can fix (file absent, truncated, wrong arrays) is a one-line
``DatasetError`` naming the file and the problem.
"""
from __future__ import annotations

import csv
import os
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from .arrays import DatasetArrays
from .errors import DataNotFoundError, DatasetError

ENV_DATA_DIR = "CL_DATA_DIR"
GTSRB_FILE = "gtsrb32.npz"
CIFAR100_FILE = "cifar100.npz"
GTSRB_NUM_CLASSES = 43
# Track ids are encoded as class * GTSRB_TRACK_BASE + track, as in gtsrb32.npz.
GTSRB_TRACK_BASE = 10000
GTSRB_IMAGE_SIZE = 32

# The 43 official GTSRB classes, indexed by ClassId (names after the benchmark's
# sign descriptions; 3.5 t = vehicles over 3.5 tonnes).
GTSRB_CLASS_NAMES: list[str] = [
    "speed limit 20",                           # 0
    "speed limit 30",                           # 1
    "speed limit 50",                           # 2
    "speed limit 60",                           # 3
    "speed limit 70",                           # 4
    "speed limit 80",                           # 5
    "end of speed limit 80",                    # 6
    "speed limit 100",                          # 7
    "speed limit 120",                          # 8
    "no passing",                               # 9
    "no passing for vehicles over 3.5 t",       # 10
    "right-of-way at the next intersection",    # 11
    "priority road",                            # 12
    "yield",                                    # 13
    "stop",                                     # 14
    "no vehicles",                              # 15
    "vehicles over 3.5 t prohibited",           # 16
    "no entry",                                 # 17
    "general caution",                          # 18
    "dangerous curve to the left",              # 19
    "dangerous curve to the right",             # 20
    "double curve",                             # 21
    "bumpy road",                               # 22
    "slippery road",                            # 23
    "road narrows on the right",                # 24
    "road work",                                # 25
    "traffic signals",                          # 26
    "pedestrians",                              # 27
    "children crossing",                        # 28
    "bicycles crossing",                        # 29
    "beware of ice/snow",                       # 30
    "wild animals crossing",                    # 31
    "end of all speed and passing limits",      # 32
    "turn right ahead",                         # 33
    "turn left ahead",                          # 34
    "ahead only",                               # 35
    "go straight or right",                     # 36
    "go straight or left",                      # 37
    "keep right",                               # 38
    "keep left",                                # 39
    "roundabout",                               # 40 (roundabout mandatory)
    "end of no passing",                        # 41
    "end of no passing by vehicles over 3.5 t",  # 42
]
assert len(GTSRB_CLASS_NAMES) == GTSRB_NUM_CLASSES


# --------------------------------------------------------------------------- paths

def find_data_dir(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Candidate directories, in the order they are searched: the explicit
    ``data_dir`` argument, ``$CL_DATA_DIR``, ``./data``. Directories that do not
    exist are kept (the not-found message lists everything that was tried, and a
    download goes to the first one); duplicates are dropped."""
    raw: list[str] = []
    if data_dir is not None and str(data_dir) != "":
        raw.append(str(data_dir))
    env = os.environ.get(ENV_DATA_DIR, "")
    if env:
        raw.append(env)
    raw.append("data")
    out: list[Path] = []
    for item in raw:
        # Absolute paths in messages: "looked in data" is useless when the
        # user does not know which working directory the run had.
        path = Path(item).expanduser().absolute()
        if path not in out:
            out.append(path)
    return out


def _dirs_text(dirs: list[Path]) -> str:
    return ", ".join(str(d) for d in dirs)


# --------------------------------------------------------------------------- npz

def _read_npz(
    path: Path,
    images: tuple[str, ...],
    labels: tuple[str, ...],
    groups: tuple[str, ...] = (),
    optional_names: str | None = None,
    optional_groups: tuple[str, ...] = (),
    channels: int | None = None,
    num_classes: int | None = None,
) -> dict[str, np.ndarray]:
    """Read and check an npz archive; returns the arrays by name. Every problem
    is a one-line DatasetError starting with the file's path. ``optional_groups``
    are checked like ``groups`` when the archive has them; ``optional_names``
    (a 1-D array of class names) is read when it has it."""
    who = str(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as exc:
        raise DatasetError(
            f"{who}: cannot open the archive (truncated or corrupt? {type(exc).__name__}: {exc}); "
            f"copy or download it again"
        ) from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DatasetError(f"{who}: is a single .npy array, not an npz archive of named arrays")
    out: dict[str, np.ndarray] = {}
    with archive:
        wanted = list(images) + list(labels) + list(groups)
        missing = [k for k in wanted if k not in archive.files]
        if missing:
            raise DatasetError(
                f"{who}: missing array(s) {', '.join(missing)} (has: {', '.join(archive.files) or 'none'})"
            )
        groups = tuple(groups) + tuple(k for k in optional_groups if k in archive.files)
        wanted += [k for k in optional_groups if k in archive.files]
        keys = wanted + ([optional_names] if optional_names and optional_names in archive.files else [])
        for key in keys:
            try:
                out[key] = archive[key]
            except ValueError as exc:
                if "pickle" in str(exc).lower():
                    raise DatasetError(f"{who}: array {key} holds pickled objects, which are not loaded") from exc
                raise DatasetError(f"{who}: array {key} is unreadable (truncated or corrupt? {exc})") from exc
            except (zipfile.BadZipFile, EOFError, OSError, zlib.error, KeyError) as exc:
                raise DatasetError(
                    f"{who}: array {key} is unreadable (truncated or corrupt? {type(exc).__name__}: {exc})"
                ) from exc

    for key in images:
        x = out[key]
        if x.ndim == 3 and channels in (None, 1):
            # Grayscale stored N x H x W: give it its channel axis here, at the
            # source, where we know the array is a batch of 2-D images.
            x = x[..., None]
        if x.ndim != 4:
            raise DatasetError(f"{who}: array {key} has shape {tuple(x.shape)} but needs N x H x W x C")
        if x.dtype != np.uint8:
            raise DatasetError(f"{who}: array {key} has dtype {x.dtype} but needs uint8")
        if channels is not None and x.shape[-1] != channels:
            raise DatasetError(
                f"{who}: array {key} has shape {tuple(x.shape)}, i.e. {x.shape[-1]} channel(s), "
                f"but needs {channels} (N x H x W x C)"
            )
        out[key] = x
    if optional_names in out and out[optional_names].ndim != 1:
        raise DatasetError(
            f"{who}: array {optional_names} has shape {tuple(out[optional_names].shape)} but needs one name per class"
        )
    for key in list(labels) + list(groups):
        y = out[key]
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DatasetError(
                f"{who}: array {key} has shape {tuple(y.shape)} and dtype {y.dtype} but needs a 1-D integer array"
            )
    for key in labels:
        y = out[key]
        if len(y) and (int(y.min()) < 0 or (num_classes is not None and int(y.max()) >= num_classes)):
            top = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
            raise DatasetError(f"{who}: array {key} holds labels {int(y.min())}..{int(y.max())} but needs {top}")
    # Matching lengths: x_train with y_train (and groups), x_test with y_test.
    for split in ("train", "test"):
        members = [k for k in wanted if k.endswith("_" + split)]
        lengths = {k: len(out[k]) for k in members}
        if len(set(lengths.values())) > 1:
            desc = ", ".join(f"{k} {n}" for k, n in lengths.items())
            raise DatasetError(f"{who}: {split} arrays have different lengths ({desc})")
    return out


def _names_from(arrays: dict[str, np.ndarray], key: str | None) -> list[str] | None:
    if key and key in arrays:
        return [str(n) for n in arrays[key].tolist()]
    return None


# --------------------------------------------------------------------------- GTSRB

def load_gtsrb(data_dir: str | os.PathLike | None = None, download: bool = False) -> DatasetArrays:
    """GTSRB with all 43 classes and official labels, as uint8 32x32 RGB.

    Search order over ``find_data_dir(data_dir)``: ``gtsrb32.npz`` in any
    candidate, then torchvision's folder layout (``<dir>/gtsrb/GTSRB/...``) in
    any candidate, then (``download=True``) torchvision's download into the
    first candidate. Only the npz carries the full 39,209-image training set
    with track ids; torchvision's train split is the 26,640-image
    ``GTSRB-Training_fixed`` set.
    """
    dirs = find_data_dir(data_dir)
    for d in dirs:
        path = d / GTSRB_FILE
        if path.is_file():
            return _gtsrb_from_npz(path)
    for d in dirs:
        if _gtsrb_folder_present(d):
            return _gtsrb_from_torchvision(d)
    if download:
        root = dirs[0]
        try:
            root.mkdir(parents=True, exist_ok=True)
            tv = _torchvision()
            for split in ("train", "test"):
                tv.datasets.GTSRB(root=str(root), split=split, download=True)
        except DatasetError:
            raise
        except Exception as exc:  # network errors, checksum mismatches, disk full
            raise DatasetError(f"GTSRB download into {root} failed: {type(exc).__name__}: {exc}") from exc
        return _gtsrb_from_torchvision(root)
    raise DataNotFoundError(
        f"GTSRB not found: looked for {GTSRB_FILE} in {_dirs_text(dirs)}; "
        f"pass --data-dir DIR, set {ENV_DATA_DIR}, or use --download"
    )


def _gtsrb_from_npz(path: Path) -> DatasetArrays:
    arrays = _read_npz(
        path,
        images=("x_train", "x_test"),
        labels=("y_train", "y_test"),
        groups=("track_train",),
        channels=3,
        num_classes=GTSRB_NUM_CLASSES,
    )
    return DatasetArrays(
        name="gtsrb",
        x_train=arrays["x_train"],
        y_train=arrays["y_train"],
        x_test=arrays["x_test"],
        y_test=arrays["y_test"],
        groups_train=arrays["track_train"],
        class_names=list(GTSRB_CLASS_NAMES),
    )


def _gtsrb_folder_present(d: Path) -> bool:
    base = d / "gtsrb"
    return (base / "GTSRB" / "Training").is_dir() and (base / "GTSRB" / "Final_Test" / "Images").is_dir()


def _torchvision():
    from ._tv import import_torchvision

    try:
        return import_torchvision()
    except ImportError as exc:
        raise DatasetError(f"this source needs torchvision, which cannot be imported: {exc}") from exc


def _read_roi_csvs(files: list[Path]) -> dict[str, tuple[int, int, int, int]]:
    """Official GT csv files (``Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId``)
    -> {absolute image path: ROI box}. Cropping to the ROI is what gtsrb32.npz
    did; doing the same here keeps the two sources' images alike."""
    boxes: dict[str, tuple[int, int, int, int]] = {}
    for csv_path in files:
        try:
            with open(csv_path, newline="") as fh:
                for row in csv.DictReader(fh, delimiter=";", skipinitialspace=True):
                    try:
                        box = tuple(int(row[k]) for k in ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2"))
                    except (KeyError, TypeError, ValueError):
                        continue
                    boxes[str((csv_path.parent / row["Filename"]).absolute())] = box  # type: ignore[assignment]
        except OSError:
            continue
    return boxes


def _track_group(path: str, label: int) -> int | None:
    """Group id ``class * 10000 + track`` from a GTSRB file name: Kaggle-style
    ``000CC_TTTTT_FFFFF`` or official ``TTTTT_FFFFF`` (class from the label)."""
    parts = Path(path).stem.split("_")
    try:
        if len(parts) == 3:
            return int(parts[0]) * GTSRB_TRACK_BASE + int(parts[1])
        if len(parts) == 2:
            return label * GTSRB_TRACK_BASE + int(parts[0])
    except ValueError:
        return None
    return None


def _load_resized(dataset, boxes: dict[str, tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    from PIL import Image  # torchvision depends on Pillow, so it is present here

    samples = getattr(dataset, "_samples", None)  # private: may vanish in later torchvision
    n = len(dataset)
    x = np.empty((n, GTSRB_IMAGE_SIZE, GTSRB_IMAGE_SIZE, 3), dtype=np.uint8)
    y = np.empty(n, dtype=np.int64)
    groups: np.ndarray | None = np.empty(n, dtype=np.int64) if samples is not None else None
    for i in range(n):
        if samples is not None:
            path, label = samples[i]
            with Image.open(path) as raw:
                img = raw.convert("RGB")
            box = boxes.get(str(Path(path).absolute()))
            if box is not None:
                img = img.crop(box)
            if groups is not None:
                g = _track_group(path, int(label))
                if g is None:
                    groups = None
                else:
                    groups[i] = g
        else:
            img, label = dataset[i]
        x[i] = np.asarray(img.resize((GTSRB_IMAGE_SIZE, GTSRB_IMAGE_SIZE), Image.BILINEAR), dtype=np.uint8)
        y[i] = int(label)
    return x, y, groups


def _gtsrb_from_torchvision(root: Path) -> DatasetArrays:
    tv = _torchvision()
    try:
        train = tv.datasets.GTSRB(root=str(root), split="train", download=False)
        test = tv.datasets.GTSRB(root=str(root), split="test", download=False)
    except Exception as exc:
        raise DatasetError(f"{root / 'gtsrb'}: torchvision cannot read the GTSRB folder: {exc}") from exc
    base = root / "gtsrb"
    boxes = _read_roi_csvs(sorted((base / "GTSRB" / "Training").glob("*/GT-*.csv")) + [base / "GT-final_test.csv"])
    try:
        x_train, y_train, g_train = _load_resized(train, boxes)
        x_test, y_test, _ = _load_resized(test, boxes)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{base}: cannot read an image: {exc}") from exc
    return DatasetArrays(
        name="gtsrb",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        groups_train=g_train,
        class_names=list(GTSRB_CLASS_NAMES),
    )


# --------------------------------------------------------------------------- CIFAR-100

def load_cifar100(data_dir: str | os.PathLike | None = None, download: bool = False) -> DatasetArrays:
    """CIFAR-100 (100 classes, 32x32 RGB, 50k/10k). A local ``cifar100.npz``
    (``x_train, y_train, x_test, y_test``, optional ``class_names``) wins; else
    torchvision's ``cifar-100-python/`` folder in a candidate; else torchvision's
    download into the first candidate when ``download=True``."""
    dirs = find_data_dir(data_dir)
    for d in dirs:
        path = d / CIFAR100_FILE
        if path.is_file():
            arrays = _read_npz(
                path,
                images=("x_train", "x_test"),
                labels=("y_train", "y_test"),
                optional_names="class_names",
                channels=3,
            )
            return DatasetArrays(
                name="cifar100",
                x_train=arrays["x_train"],
                y_train=arrays["y_train"],
                x_test=arrays["x_test"],
                y_test=arrays["y_test"],
                class_names=_names_from(arrays, "class_names"),
            )
    root = next((d for d in dirs if (d / "cifar-100-python").is_dir()), None)
    if root is None and download:
        root = dirs[0]
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasetError(f"cannot create {root} for the CIFAR-100 download: {exc}") from exc
    if root is None:
        raise DataNotFoundError(
            f"CIFAR-100 not found: looked for {CIFAR100_FILE} or cifar-100-python/ in {_dirs_text(dirs)}; "
            f"pass --data-dir DIR, set {ENV_DATA_DIR}, or use --download"
        )
    tv = _torchvision()
    try:
        train = tv.datasets.CIFAR100(root=str(root), train=True, download=download)
        test = tv.datasets.CIFAR100(root=str(root), train=False, download=download)
    except Exception as exc:
        raise DatasetError(f"{root / 'cifar-100-python'}: torchvision cannot load CIFAR-100: {exc}") from exc
    return DatasetArrays(
        name="cifar100",
        x_train=np.asarray(train.data, dtype=np.uint8),
        y_train=np.asarray(train.targets, dtype=np.int64),
        x_test=np.asarray(test.data, dtype=np.uint8),
        y_test=np.asarray(test.targets, dtype=np.int64),
        class_names=list(getattr(train, "classes", []) or []) or None,
    )


# --------------------------------------------------------------------------- digits

DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0


def load_digits() -> DatasetArrays:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), the
    embedded offline dataset: it ships inside scikit-learn, so no network and
    no data directory are needed. Pixel values 0..16 are scaled to 0..255.
    The test split is fixed: stratified 25 %, seed 0 (independent of the
    stream seed, so every run tests on the same images)."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise DatasetError(f"the digits dataset needs scikit-learn, which cannot be imported: {exc}") from exc
    bunch = sk_load_digits()
    images = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0))
    x = np.clip(images, 0, 255).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    y = np.asarray(bunch.target, dtype=np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=DIGITS_TEST_FRACTION, stratify=y, random_state=DIGITS_SPLIT_SEED
    )
    idx_train.sort()
    idx_test.sort()
    return DatasetArrays(
        name="digits",
        x_train=x[idx_train],
        y_train=y[idx_train],
        x_test=x[idx_test],
        y_test=y[idx_test],
        class_names=[str(i) for i in range(10)],
    )


# --------------------------------------------------------------------------- synthetic

SYNTHETIC_GROUP_BASE = 1000


def make_synthetic(
    num_classes: int = 6,
    train_per_class: int = 60,
    test_per_class: int = 20,
    image_size: int = 8,
    channels: int = 3,
    groups_per_class: int = 4,
    seed: int = 0,
) -> DatasetArrays:
    """Tiny generated images for tests.

    Each class has a fixed random prototype image (pixels near 0.15 or 0.85, so
    classes differ in about half their pixels: a small CNN separates two classes
    within an epoch or two, and when it then trains only on new classes it
    forgets the old ones, as class-incremental learning should). A training
    image is prototype + a per-group offset + per-image noise; the per-group
    offset makes a group's images look alike (like the frames of a GTSRB track),
    so a validation split that ignored groups would leak. Groups are
    ``class * 1000 + g``. Test images use fresh noise and no group offset.
    """
    for key, value, low in (
        ("num_classes", num_classes, 1),
        ("train_per_class", train_per_class, 1),
        ("test_per_class", test_per_class, 0),
        ("image_size", image_size, 1),
        ("channels", channels, 1),
        ("groups_per_class", groups_per_class, 1),
    ):
        if int(value) != value or value < low:
            raise DatasetError(f"make_synthetic: {key} must be an integer >= {low}, got {value!r}")
    if groups_per_class > train_per_class:
        raise DatasetError(
            f"make_synthetic: groups_per_class ({groups_per_class}) exceeds train_per_class ({train_per_class})"
        )
    if groups_per_class >= SYNTHETIC_GROUP_BASE:
        raise DatasetError(f"make_synthetic: groups_per_class must be < {SYNTHETIC_GROUP_BASE}")
    rng = np.random.default_rng(seed)
    shape = (image_size, image_size, channels)
    protos = np.where(rng.random((num_classes, *shape)) < 0.5, 0.15, 0.85)
    group_offsets = rng.normal(0.0, 0.08, size=(num_classes, groups_per_class, *shape))

    y_train = np.repeat(np.arange(num_classes), train_per_class)
    g_local = np.tile(np.arange(train_per_class) % groups_per_class, num_classes)
    x_train = (
        protos[y_train]
        + group_offsets[y_train, g_local]
        + rng.normal(0.0, 0.08, size=(len(y_train), *shape))
    )
    y_test = np.repeat(np.arange(num_classes), test_per_class)
    x_test = protos[y_test] + rng.normal(0.0, 0.08, size=(len(y_test), *shape))

    def to_uint8(x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)

    return DatasetArrays(
        name="synthetic",
        x_train=to_uint8(x_train),
        y_train=y_train.astype(np.int64),
        x_test=to_uint8(x_test).reshape(len(y_test), *shape),
        y_test=y_test.astype(np.int64),
        groups_train=(y_train * SYNTHETIC_GROUP_BASE + g_local).astype(np.int64),
        class_names=[f"class {c}" for c in range(num_classes)],
    )


# --------------------------------------------------------------------------- the user's npz

NPZ_IMAGES = ("x_train", "x_test")
NPZ_LABELS = ("y_train", "y_test")
NPZ_GROUPS = "groups_train"
NPZ_NAMES = "class_names"


def find_npz(data_dir: str | os.PathLike | None) -> Path:
    """The user's npz: ``data_dir`` itself, or the one ``.npz`` file in that folder."""
    if data_dir is None or str(data_dir) == "":
        raise DataNotFoundError("dataset npz needs --data-dir FILE.npz (or a folder that holds one .npz file)")
    path = Path(data_dir).expanduser()
    if path.is_dir():
        found = sorted(path.glob("*.npz"))
        if len(found) != 1:
            what = "no .npz file" if not found else f"{len(found)} .npz files ({', '.join(f.name for f in found)})"
            raise DataNotFoundError(f"{path}: holds {what}; pass --data-dir FILE.npz")
        return found[0]
    if not path.is_file():
        raise DataNotFoundError(f"{path} does not exist (--data-dir FILE.npz, or a folder that holds one .npz file)")
    return path


def load_npz(data_dir: str | os.PathLike | None) -> DatasetArrays:
    """The user's arrays: uint8 images N x H x W x C (or N x H x W: one channel),
    integer labels (any ids >= 0: the natural class order sorts them), optional
    ``groups_train`` (one group id per training image: the validation split
    keeps each group on one side, as GTSRB's tracks) and ``class_names`` (one
    per label id). The dataset is named after the file."""
    path = find_npz(data_dir)
    arrays = _read_npz(path, images=NPZ_IMAGES, labels=NPZ_LABELS, optional_groups=(NPZ_GROUPS,),
                       optional_names=NPZ_NAMES)
    return DatasetArrays(
        name=path.stem,
        x_train=arrays["x_train"],
        y_train=arrays["y_train"],
        x_test=arrays["x_test"],
        y_test=arrays["y_test"],
        groups_train=arrays.get(NPZ_GROUPS),
        class_names=_names_from(arrays, NPZ_NAMES),
    )


# --------------------------------------------------------------------------- registry

DATASETS: dict[str, Callable[..., DatasetArrays]] = {
    "gtsrb": lambda data_dir, download: load_gtsrb(data_dir, download),
    "cifar100": lambda data_dir, download: load_cifar100(data_dir, download),
    "digits": lambda data_dir, download: load_digits(),
    "synthetic": lambda data_dir, download: make_synthetic(),
    "npz": lambda data_dir, download: load_npz(data_dir),
}


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, download: bool = False) -> DatasetArrays:
    """Load a dataset by name: one of ``DATASETS`` (gtsrb, cifar100, digits,
    synthetic, npz). ``data_dir`` / ``download`` matter only for file-backed ones
    (for npz, ``data_dir`` is the file or its folder)."""
    key = str(name).strip().lower()
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[key](data_dir, download)

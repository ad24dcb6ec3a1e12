"""The raw form every dataset source produces: numpy arrays in memory.

A source (``datasets/sources.py``) reads files or generates data and returns a
``DatasetArrays``; ``datasets/builder.py`` turns one into a class-incremental
``Stream``. Keeping this layer as plain numpy (HWC, as image files and npz
archives store it) means sources need no torch and the builder does the single
HWC -> NCHW conversion, per task, once.

Validation happens here, at construction, so a malformed source fails with a
one-line ``DatasetError`` that names the array and the problem, instead of as an
IndexError deep inside training. Grayscale sources must expand ``(N, H, W)`` to
``(N, H, W, 1)`` themselves: guessing a channel axis here could silently turn a
batch of RGB rows into nonsense.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DatasetError


@dataclass
class DatasetArrays:
    """Images (uint8, N x H x W x C) with their ORIGINAL class ids.

    ``groups_train`` (optional) gives, per training image, the id of the group of
    near-duplicates it belongs to (GTSRB: ``class * 10000 + track``): validation
    splits are made by group so that no group is on both sides. ``class_names``
    (optional) is indexed by original class id.

    Integer label / group arrays of any integer dtype are accepted and stored as
    int64 (the GTSRB file keeps int16 labels); anything else is an error.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    groups_train: np.ndarray | None = None
    class_names: list[str] | None = None

    def __post_init__(self) -> None:
        who = self.name or "dataset"
        for key in ("x_train", "x_test"):
            x = getattr(self, key)
            if not isinstance(x, np.ndarray):
                raise DatasetError(f"{who}: {key} must be a numpy array, got {type(x).__name__}")
            if x.ndim != 4:
                raise DatasetError(f"{who}: array {key} has shape {tuple(x.shape)} but needs N x H x W x C")
            if x.dtype != np.uint8:
                raise DatasetError(f"{who}: array {key} has dtype {x.dtype} but needs uint8 (0..255)")
        if len(self.x_train) == 0:
            raise DatasetError(f"{who}: x_train holds no images")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DatasetError(
                f"{who}: train images are {self.x_train.shape[1:]} (H x W x C) but test images are "
                f"{self.x_test.shape[1:]}; they must match"
            )
        self.y_train = _labels(who, "y_train", self.y_train, len(self.x_train), "x_train")
        self.y_test = _labels(who, "y_test", self.y_test, len(self.x_test), "x_test")
        for key in ("y_train", "y_test"):
            y = getattr(self, key)
            if len(y) and int(y.min()) < 0:
                raise DatasetError(f"{who}: array {key} holds negative label {int(y.min())}; class ids must be >= 0")
        if self.groups_train is not None:
            self.groups_train = _labels(who, "groups_train", self.groups_train, len(self.x_train), "x_train")
        if self.class_names is not None:
            self.class_names = [str(n) for n in self.class_names]
            top = max(int(self.y_train.max()), int(self.y_test.max()) if len(self.y_test) else 0)
            if len(self.class_names) <= top:
                raise DatasetError(
                    f"{who}: class_names has {len(self.class_names)} names but labels go up to {top}"
                )

    @property
    def image_shape_hwc(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def classes(self) -> list[int]:
        """Class ids present in the training split, sorted (the natural order)."""
        return [int(c) for c in np.unique(self.y_train)]


def _labels(who: str, key: str, y, n: int, images_key: str) -> np.ndarray:
    if not isinstance(y, np.ndarray):
        raise DatasetError(f"{who}: {key} must be a numpy array, got {type(y).__name__}")
    if y.ndim != 1:
        raise DatasetError(f"{who}: array {key} has shape {tuple(y.shape)} but needs one value per image (N,)")
    if not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{who}: array {key} has dtype {y.dtype} but needs an integer dtype")
    if len(y) != n:
        raise DatasetError(f"{who}: array {key} has {len(y)} entries but {images_key} has {n} images")
    # copy=False: int64 input (the common case after the first load) is not copied.
    return y.astype(np.int64, copy=False)

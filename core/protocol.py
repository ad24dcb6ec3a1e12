"""The stream protocol: a typed, frozen description of the benchmark a run is on.

Everything that decides WHICH class-incremental stream a run sees -- the
dataset, the classes used, how they are cut into tasks, their order, the
validation split carved from each task's training data, and where the data is
read from -- is one ``StreamProtocol``. It is validated once, field by field,
with the same ``bounded()`` metadata as the strategy configs (a bad value is one
``ConfigError`` line), stored as is in ``search.json`` (key ``stream_protocol``)
and in every ``result.json`` (``stream.protocol``), and turned into a stream by
one function, ``datasets.protocol.load_stream(protocol)``. It lives in the leaf
package because the report and the command-line checks read it without loading
any data (and without importing torch).

The protocol follows iCaRL's class-incremental setting (Rebuffi et al. 2017,
§4): the classes are put in an order (natural or seeded by ``stream_seed``), cut
into tasks of ``tasks`` equal parts (remainders to the first tasks) or of
explicit ``task_sizes``, and relabelled so task t owns a contiguous label range.
What a METHOD may tune (learning rate, memory, epochs, ...) is not here: that is
the strategy config and the loop config.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from core.config import ConfigError, bounded, config_from_dict

# Datasets a protocol can name (datasets/sources.py loads cifar100, digits, gtsrb,
# synthetic and npz by name; "folders" is one ImageFolder tree per task and
# "imagefolder" one tree cut into tasks, datasets/imagefolder.py).
DATASET_NAMES = ("cifar100", "digits", "folders", "gtsrb", "imagefolder", "npz", "synthetic")
# The user's own data: read from data_dir, which they must name.
USER_DATASETS = ("imagefolder", "npz")
# Datasets whose images are resized to image_size when read.
RESIZED_DATASETS = ("folders", "imagefolder")


@dataclasses.dataclass(frozen=True)
class StreamProtocol:
    """Which stream a run trains and is evaluated on (see the module docstring)."""

    dataset: str = bounded("digits", choices=DATASET_NAMES, help="dataset name")
    classes: int | None = bounded(None, min=1, max=1_000_000, help="use the first N classes (None = all)")
    tasks: int | None = bounded(None, min=1, max=100_000, help="number of tasks (or task_sizes)")
    task_sizes: tuple[int, ...] | None = bounded(None, min=1, max=1_000_000, help="explicit classes per task")
    class_order: str = bounded("natural", choices=("natural", "seeded"), help="class order before the cut")
    stream_seed: int = bounded(0, min=0, max=2**31 - 1, help="seed of the class order and the validation split")
    val_fraction: float = bounded(0.1, min=0.0, max=0.99, help="validation share of each task's training data")
    folders: tuple[str, ...] | None = bounded(None, help="dataset=folders: one ImageFolder root per task, in order")
    image_size: int | None = bounded(64, min=1, max=4096, help="dataset=folders/imagefolder: images are resized to "
                                     "this square size (imagefolder: None = their longest side, at most 64)")
    test_fraction: float | None = bounded(None, min=0.01, max=0.9, help="dataset=imagefolder without train/ and test/: "
                                          "test share of each class folder (None = 0.2)")
    data_dir: str | None = bounded(None, help="where the data files are (else $CL_DATA_DIR, ./data); "
                                   "imagefolder: the tree's root; npz: the file")
    download: bool = bounded(False, help="download through torchvision when not found (needs a network)")

    def __post_init__(self) -> None:
        # Rules that tie fields together (each field's own bounds are checked by
        # ``from_dict``; a protocol built directly is checked here too).
        if self.tasks is not None and self.task_sizes is not None:
            raise ConfigError("protocol: give tasks or task_sizes, not both")
        if self.dataset == "folders":
            if not self.folders:
                raise ConfigError("protocol: dataset 'folders' needs folders (one ImageFolder root per task)")
            if self.classes is not None or self.tasks is not None:
                raise ConfigError("protocol: with dataset 'folders' the tasks are the folders: drop classes/tasks")
        elif self.folders:
            raise ConfigError("protocol: folders are only used with dataset 'folders'")
        if self.dataset != "folders" and self.tasks is None and self.task_sizes is None:
            raise ConfigError("protocol: give tasks or task_sizes")
        if self.dataset in USER_DATASETS and not self.data_dir:
            raise ConfigError(f"protocol: dataset {self.dataset!r} needs data_dir (where the user's data is)")
        # None (the images' own size) is resolved when the tree is read, and the
        # completed protocol (datasets.protocol.load_arrays) holds the number.
        if self.image_size is None and self.dataset != "imagefolder":
            raise ConfigError("protocol: image_size None (the images' own size) is only for dataset 'imagefolder'")
        if self.test_fraction is not None and self.dataset != "imagefolder":
            raise ConfigError("protocol: test_fraction is only used with dataset 'imagefolder'")

    @classmethod
    def from_dict(cls, values: dict[str, Any], owner: str = "protocol") -> "StreamProtocol":
        """Typed and bound-checked (unknown keys are an error, as for every config)."""
        return config_from_dict(cls, values, owner=owner)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def with_absolute_paths(self, base: Path | None = None) -> "StreamProtocol":
        """The same protocol with ``data_dir`` and ``folders`` made absolute, so a
        results folder can be re-read (rerun, resume) from any working directory."""
        base = base or Path.cwd()

        def absolute(p: str) -> str:
            return str((base / Path(p).expanduser()).resolve())
        return dataclasses.replace(
            self,
            data_dir=absolute(self.data_dir) if self.data_dir else None,
            folders=tuple(absolute(f) for f in self.folders) if self.folders else self.folders,
        )


STREAM_PROTOCOL_KEYS = tuple(f.name for f in dataclasses.fields(StreamProtocol))


def upgrade_search_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A ``search.json`` of format 1 in the shape of format 2.

    Format 1 kept the stream protocol and the loop settings in one flat
    ``protocol`` object; format 2 stores the typed ``stream_protocol`` and the
    ``loop`` config apart. A format-2 spec is returned unchanged.
    """
    if spec.get("format") != "clsearch-search/1":
        return spec
    flat = dict(spec.get("protocol") or {})
    stream = {k: flat.pop(k) for k in STREAM_PROTOCOL_KEYS if k in flat}
    if stream.get("dataset") != "folders":
        stream.pop("image_size", None)
    loop = {**flat, "eval_split": "val"}
    out = {k: v for k, v in spec.items() if k != "protocol"}
    out.update(format="clsearch-search/2", stream_protocol=stream, loop=loop)
    return out

"""Data layer: dataset arrays in, class-incremental ``Stream`` out (docs/ARCHITECTURE.md).

- ``sources``: where images come from (GTSRB npz / torchvision, CIFAR-100,
  scikit-learn digits offline, synthetic for tests) -> ``DatasetArrays``.
- ``builder``: class selection and order, task cuts, relabelling, validation
  split by group or stratified -> ``Stream``.
- ``stream``: the ``Split`` / ``Task`` / ``Stream`` objects the loop consumes.

No Ray and no training here. torchvision is imported lazily, only by the
sources that need it, through ``datasets._tv.import_torchvision``.
"""
from .arrays import DatasetArrays
from .builder import build_stream, plan_stream
from .errors import DataNotFoundError, DatasetError
from .imagefolder import build_folder_stream, load_folder_arrays
from .sources import find_data_dir, load_cifar100, load_dataset, load_digits, load_gtsrb, make_synthetic
from .stream import Split, Stream, Task, channel_stats

__all__ = [
    "DatasetArrays",
    "DatasetError",
    "DataNotFoundError",
    "Split",
    "Task",
    "Stream",
    "build_stream",
    "plan_stream",
    "channel_stats",
    "find_data_dir",
    "load_dataset",
    "load_gtsrb",
    "load_cifar100",
    "load_digits",
    "make_synthetic",
    "build_folder_stream",
    "load_folder_arrays",
]

"""From a ``StreamProtocol`` (core/protocol.py) to a class-incremental ``Stream``.

``load_stream(protocol)`` is the one way: ``load_arrays`` reads the dataset the
protocol names (and completes the protocol with what only the data can say:
the task sizes of a ``folders`` sequence; an ``imagefolder`` tree's image size
and test fraction when they were left to the data), ``build_protocol_stream`` cuts it into
tasks (datasets/builder.py) and records the protocol in the stream's
description, so every result file says exactly which stream it ran on.
"""
from __future__ import annotations

import dataclasses

from core.protocol import StreamProtocol

from .errors import DatasetError


def load_arrays(protocol: StreamProtocol):
    """The protocol's dataset arrays, and the protocol completed with what only the
    data can say (for ``folders``: the task sizes are the roots' class counts; for
    ``imagefolder``: the image size and the test fraction actually used, so a
    rerun of the stored protocol reads the tree the same way)."""
    from .imagefolder import load_folder_arrays, load_imagefolder_arrays
    from .sources import load_dataset

    if protocol.dataset == "folders":
        arrays, sizes = load_folder_arrays(list(protocol.folders), protocol.image_size)
        return arrays, dataclasses.replace(protocol, task_sizes=tuple(sizes))
    if protocol.dataset == "imagefolder":
        arrays, size, fraction = load_imagefolder_arrays(
            protocol.data_dir, protocol.image_size, protocol.test_fraction, seed=protocol.stream_seed)
        return arrays, dataclasses.replace(protocol, image_size=size, test_fraction=fraction)
    return load_dataset(protocol.dataset, data_dir=protocol.data_dir, download=protocol.download), protocol


def build_protocol_stream(arrays, protocol: StreamProtocol, val_fraction: float | None = None):
    """The stream of ``protocol`` from already loaded arrays (the search driver
    loads them once and ships them to every trial). ``val_fraction`` overrides
    the protocol's (a rerun trains on train+val: 0)."""
    from .builder import build_stream

    if protocol.dataset == "folders" and protocol.task_sizes is None:
        raise DatasetError("protocol: a folders protocol needs its task sizes (load it with load_arrays)")
    if protocol.dataset == "imagefolder" and protocol.image_size is None:
        raise DatasetError("protocol: an imagefolder protocol needs its image size (load it with load_arrays)")
    stream = build_stream(
        arrays,
        num_tasks=protocol.tasks,
        task_sizes=list(protocol.task_sizes) if protocol.task_sizes is not None else None,
        classes=protocol.classes,
        class_order=protocol.class_order,
        seed=protocol.stream_seed,
        val_fraction=protocol.val_fraction if val_fraction is None else val_fraction,
    )
    stream.info["protocol"] = protocol.to_dict()
    return stream


def load_stream(protocol: StreamProtocol, val_fraction: float | None = None):
    """The one way from a protocol to a ``Stream``: load the data, build the stream."""
    arrays, protocol = load_arrays(protocol)
    return build_protocol_stream(arrays, protocol, val_fraction)

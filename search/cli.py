"""The command-line options shared by ``search/run.py`` and ``search/rerun.py``.

Two typed objects come out of the dataset/protocol options:

- a ``StreamProtocol`` (datasets/protocol.py): which stream -- dataset, classes,
  tasks, class order, validation split, where the data is;
- a ``LoopConfig`` (strategies/loop.py): how every run trains on it -- epochs,
  batch size, backbone, augmentation, precision, device, threads, seed.

Each dataset has defaults for both (``DATASET_DEFAULTS``: the GTSRB course
notebook protocol, classes 0..39 in 5 tasks of 8 with SimpleCNN for 5 epochs;
iCaRL's CIFAR-100 protocol, 10 tasks of 10 with ResNet-32 for 70 epochs; ...);
an explicit flag overrides a default. Also ``--set key=value`` parsing.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parent.parent

# Defaults per dataset; every value can be overridden on the command line.
# Stream keys (classes, tasks) go to the StreamProtocol, the rest to the LoopConfig.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"tasks": 5, "backbone": "simplecnn", "epochs": 8, "augment": "crop", "batch_size": 64},
    "synthetic": {"tasks": 3, "backbone": "simplecnn", "epochs": 2, "augment": "none", "batch_size": 32},
    "gtsrb": {"classes": 40, "tasks": 5, "backbone": "simplecnn", "epochs": 5, "augment": "crop", "batch_size": 128},
    "cifar100": {"tasks": 10, "backbone": "resnet32", "epochs": 70, "augment": "crop+flip", "batch_size": 128},
    # The PackNet sequence (Mallya & Lazebnik 2018): one ImageFolder tree per task
    # (--folders), VGG-16; 64 px by default so that it runs on a CPU (paper: 224).
    "folders": {"backbone": "vgg16", "epochs": 10, "augment": "crop+flip", "batch_size": 32},
}
STREAM_KEYS = ("classes", "tasks")
LOOP_KEYS = ("backbone", "epochs", "augment", "batch_size")


def add_protocol_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("dataset and protocol")
    g.add_argument("--dataset", default="digits", choices=sorted(DATASET_DEFAULTS),
                   help="digits (embedded, offline; default), gtsrb, cifar100, synthetic, "
                        "folders (one ImageFolder tree per task, see --folders)")
    g.add_argument("--folders", default=None,
                   help="with --dataset folders: comma-separated roots, each with train/<class>/ and test/<class>/, one task per root in this order")
    g.add_argument("--image-size", type=int, default=64, help="with --dataset folders: images are resized to this square size")
    g.add_argument("--data-dir", default=None, help="folder with gtsrb32.npz / cifar100.npz or torchvision layouts (else $CL_DATA_DIR, ./data)")
    g.add_argument("--download", action="store_true", help="download through torchvision if not found (needs a network)")
    g.add_argument("--classes", type=int, default=None, help="use the first N classes (gtsrb default 40: the notebook protocol)")
    g.add_argument("--tasks", type=int, default=None, help="number of tasks (remainders go to the first tasks)")
    g.add_argument("--task-sizes", default=None, help="explicit classes per task, e.g. 10,5,5,5")
    g.add_argument("--class-order", default="natural", choices=("natural", "seeded"))
    g.add_argument("--stream-seed", type=int, default=0, help="seed of the class order and the validation split")
    g.add_argument("--val-fraction", type=float, default=0.1, help="validation share of each task's training data")
    g.add_argument("--epochs", type=int, default=None, help="epochs per task")
    g.add_argument("--batch-size", type=int, default=None)
    g.add_argument("--backbone", default=None, choices=("simplecnn", "resnet32", "vgg16"))
    g.add_argument("--pretrained", action="store_true",
                   help="vgg16: start from ImageNet weights if they are in torch's hub cache (never downloaded; the output says which init was used)")
    g.add_argument("--augment", default=None, choices=("none", "crop", "crop+flip"))
    g.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="bf16 autocast (CPUs with AMX, GPUs)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    g.add_argument("--threads", type=int, default=0, help="torch threads per run (0 = torch default)")


def stream_protocol_from_args(args: argparse.Namespace):
    """The typed stream protocol: dataset defaults overridden by explicit flags,
    paths made absolute (a results folder must be readable from anywhere)."""
    from core.protocol import StreamProtocol

    defaults = DATASET_DEFAULTS[args.dataset]
    values: dict[str, Any] = {key: defaults.get(key) for key in STREAM_KEYS}
    for key in STREAM_KEYS:
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.dataset == "folders":
        if not args.folders:
            raise UsageError("--dataset folders needs --folders ROOT1,ROOT2,... (one ImageFolder tree per task)")
        if args.tasks or args.task_sizes or args.classes:
            raise UsageError("with --dataset folders the tasks are the folders: drop --tasks/--task-sizes/--classes")
        values.update(folders=[r for r in args.folders.split(",") if r], image_size=args.image_size)
    elif args.folders:
        raise UsageError("--folders is only used with --dataset folders")
    if args.task_sizes:
        try:
            values["task_sizes"] = [int(v) for v in args.task_sizes.split(",")]
        except ValueError:
            raise UsageError(f"--task-sizes {args.task_sizes!r} must be comma-separated integers") from None
        values["tasks"] = None
    values.update(dataset=args.dataset, data_dir=args.data_dir, download=args.download,
                  class_order=args.class_order, stream_seed=args.stream_seed, val_fraction=args.val_fraction)
    return StreamProtocol.from_dict(values, owner="protocol").with_absolute_paths()


def loop_config_from_args(args: argparse.Namespace, seed: int = 0, eval_split: str = "val"):
    """The typed loop config: dataset defaults overridden by explicit flags."""
    from core.config import config_from_dict
    from strategies.loop import MIN_IMAGE_SIDE, LoopConfig

    defaults = DATASET_DEFAULTS[args.dataset]
    values = {key: defaults[key] for key in LOOP_KEYS}
    for key in LOOP_KEYS:
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    values.update(precision=args.precision, device=args.device, threads=args.threads, pretrained=args.pretrained,
                  seed=seed, eval_split=eval_split)
    loop = config_from_dict(LoopConfig, values, owner="protocol")
    if args.dataset == "folders":
        # The loop's own limit, checked here before any image is read.
        smallest = MIN_IMAGE_SIDE.get(loop.backbone, 1)
        if args.image_size < smallest:
            raise UsageError(f"--image-size {args.image_size} is too small for {loop.backbone} "
                             f"(its poolings need at least {smallest})")
    return loop


def loop_config_from_dict(values: dict[str, Any], **changes: Any):
    """A LoopConfig stored in search.json / result.json, with ``changes`` applied."""
    from core.config import config_from_dict
    from strategies.loop import LoopConfig

    return config_from_dict(LoopConfig, {**values, **changes}, owner="protocol")


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """``["lr=0.5", "memory=200"]`` -> {"lr": "0.5", "memory": "200"} (typed later)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"--set {item!r} must look like key=value")
        if key.strip() in out:
            raise UsageError(f"--set {key.strip()!r} given twice")
        out[key.strip()] = value.strip()
    return out

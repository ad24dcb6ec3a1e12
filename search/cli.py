"""The command-line options shared by ``search/run.py`` and ``search/rerun.py``.

Two typed objects come out of the dataset/protocol options:

- a ``StreamProtocol`` (datasets/protocol.py): which stream -- dataset, classes,
  tasks, class order, validation split, where the data is;
- a ``LoopConfig`` (strategies/loop.py): how every run trains on it -- epochs,
  batch size, backbone, augmentation, precision, device, threads, seed.

Each dataset has defaults for both (``DATASET_DEFAULTS``: the GTSRB course
notebook protocol, classes 0..39 in 5 tasks of 8 with SimpleCNN for 5 epochs;
iCaRL's CIFAR-100 protocol, 10 tasks of 10 with ResNet-32 for 70 epochs; ...);
an explicit flag overrides a default. The user's own data (``imagefolder``,
``npz``) has no fixed protocol: its loop defaults follow its images, and are
resolved once they are loaded (``resolve_data_defaults``, called by run.py and
rerun.py). Also ``--set key=value`` parsing.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from core.errors import UsageError
from core.protocol import USER_DATASETS

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

# The user's own data (--dataset imagefolder / npz): the loop defaults follow the
# images' side, known only once they are read (resolve_data_defaults). Small
# images (digits, signs, icons) get the small CNN; larger ones VGG-16, the
# network of the ImageFolder sequences. Never a flip by default: mirroring
# changes what digits and several traffic signs mean, and nothing says a user's
# classes survive it (--augment crop+flip asks for it). 5 epochs: minutes, not
# hours, on a CPU.
SMALL_IMAGE_SIDE = 64
USER_DATA_DEFAULTS: dict[str, dict[str, Any]] = {
    "small": {"backbone": "simplecnn", "epochs": 5, "augment": "crop", "batch_size": 64},
    "large": {"backbone": "vgg16", "epochs": 5, "augment": "crop", "batch_size": 32},
}
# Until the images are read, the small-image defaults stand in (they pass every
# check loop_config_from_args makes before any data is loaded).
DATASET_DEFAULTS.update({name: dict(USER_DATA_DEFAULTS["small"]) for name in USER_DATASETS})
# --dataset folders: images are resized to this side unless --image-size says otherwise.
FOLDERS_IMAGE_SIZE = 64


def add_protocol_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("dataset and protocol")
    g.add_argument("--dataset", default="digits", choices=sorted(DATASET_DEFAULTS),
                   help="digits (embedded, offline; default), gtsrb, cifar100, synthetic, "
                        "folders (one ImageFolder tree per task, see --folders), "
                        "imagefolder (your ImageFolder tree at --data-dir, cut into --tasks), "
                        "npz (your arrays in the npz file at --data-dir, cut into --tasks)")
    g.add_argument("--folders", default=None,
                   help="with --dataset folders: comma-separated roots, each with train/<class>/ and test/<class>/, one task per root in this order")
    g.add_argument("--image-size", type=int, default=None,
                   help="with --dataset folders or imagefolder: images are resized to this square size "
                        f"(folders: default {FOLDERS_IMAGE_SIZE}; imagefolder: default their longest side, at most {SMALL_IMAGE_SIDE})")
    g.add_argument("--test-fraction", type=float, default=None,
                   help="with --dataset imagefolder and no train/ and test/ folders: test share of each class folder (default 0.2)")
    g.add_argument("--data-dir", default=None,
                   help="folder with gtsrb32.npz / cifar100.npz or torchvision layouts (else $CL_DATA_DIR, ./data); "
                        "imagefolder: the tree's root; npz: the .npz file")
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
    # Default None, read as fp32: a rerun can then tell an explicit --precision fp32
    # (which overrides a bf16 search's loop) from no flag at all.
    g.add_argument("--precision", default=None, choices=("fp32", "bf16"),
                   help="fp32 (default) or bf16 autocast (fast on GPUs and on CPUs with AMX or AVX512-BF16)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    g.add_argument("--threads", type=int, default=0,
                   help="torch threads per run (0 = every CPU this process may use; a search trial uses the CPUs Ray gives it)")


def stream_protocol_from_args(args: argparse.Namespace):
    """The typed stream protocol: dataset defaults overridden by explicit flags,
    paths made absolute (a results folder must be readable from anywhere)."""
    from core.protocol import StreamProtocol

    defaults = DATASET_DEFAULTS[args.dataset]
    values: dict[str, Any] = {key: defaults.get(key) for key in STREAM_KEYS}
    for key in STREAM_KEYS:
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    one_tree = "for ONE tree whose classes are cut into tasks use --dataset imagefolder --data-dir ROOT --tasks N"
    if args.dataset == "folders":
        if not args.folders:
            raise UsageError(f"--dataset folders needs --folders ROOT1,ROOT2,... (one ImageFolder tree per task); {one_tree}")
        if args.tasks or args.task_sizes or args.classes:
            raise UsageError(f"with --dataset folders the tasks are the folders: drop --tasks/--task-sizes/--classes; {one_tree}")
        roots = [r for r in args.folders.split(",") if r]
        if len(roots) < 2:
            # One root is one task: nothing incremental to learn or to forget.
            raise UsageError(f"--folders with one root is a single task; give two or more roots, or {one_tree}")
        values.update(folders=roots, image_size=args.image_size or FOLDERS_IMAGE_SIZE)
    elif args.folders:
        raise UsageError("--folders is only used with --dataset folders")
    if args.dataset in USER_DATASETS:
        if not args.data_dir:
            where = "ROOT (an ImageFolder tree)" if args.dataset == "imagefolder" else "FILE.npz"
            raise UsageError(f"--dataset {args.dataset} needs --data-dir {where}")
        if args.tasks is None and not args.task_sizes:
            raise UsageError(f"--dataset {args.dataset}: say how to cut its classes into tasks: "
                             f"--tasks N or --task-sizes A,B,...")
    if args.dataset == "imagefolder":
        values.update(image_size=args.image_size, test_fraction=args.test_fraction)
    else:
        if args.image_size is not None and args.dataset != "folders":
            raise UsageError(f"--image-size is only used with --dataset folders or imagefolder "
                             f"({args.dataset} images keep their stored size)")
        if args.test_fraction is not None:
            raise UsageError("--test-fraction is only used with --dataset imagefolder (a tree without train/ and test/)")
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
    values.update(precision=args.precision or "fp32", device=args.device, threads=args.threads, pretrained=args.pretrained,
                  seed=seed, eval_split=eval_split)
    loop = config_from_dict(LoopConfig, values, owner="protocol")
    image_size = FOLDERS_IMAGE_SIZE if args.dataset == "folders" and args.image_size is None else args.image_size
    if image_size is not None:
        # The loop's own limit, checked here before any image is read.
        smallest = MIN_IMAGE_SIDE.get(loop.backbone, 1)
        if image_size < smallest:
            raise UsageError(f"--image-size {image_size} is too small for {loop.backbone} "
                             f"(its poolings need at least {smallest})")
    return loop


def warn_if_bf16_emulated(loop) -> None:
    """One line on stderr when ``loop`` asks for bf16 on a CPU that would emulate
    it (core.machine.slow_bf16_warning): the run works, only much slower."""
    from core.machine import slow_bf16_warning
    from strategies.loop import resolve_device

    message = slow_bf16_warning(loop.precision, resolve_device(loop.device).type)
    if message:
        print(message, file=sys.stderr, flush=True)


def resolve_data_defaults(args: argparse.Namespace, loop, stream):
    """The loop config with the user's-data defaults that follow the images.

    For ``imagefolder`` and ``npz`` the backbone, augmentation, epochs and batch
    size a flag did not set are taken from ``USER_DATA_DEFAULTS`` by the
    stream's image side (at most ``SMALL_IMAGE_SIDE``: small, else large), and
    one line on stderr says what was chosen and why. Any other dataset's loop
    is returned unchanged (its defaults are fixed, ``DATASET_DEFAULTS``)."""
    if args.dataset not in USER_DATASETS:
        return loop
    channels, height, width = stream.image_shape
    kind = "small" if max(height, width) <= SMALL_IMAGE_SIDE else "large"
    chosen = {k: v for k, v in USER_DATA_DEFAULTS[kind].items() if getattr(args, k) is None}
    if not chosen:
        return loop
    loop = dataclasses.replace(loop, **chosen)
    colour = {1: "grayscale", 3: "RGB"}.get(channels, f"{channels}-channel")
    said = {"backbone": chosen.get("backbone"),
            "augment": chosen.get("augment") and (f"{chosen['augment']} augmentation"
                                                  + (" (no flips)" if "flip" not in chosen["augment"] else "")),
            "epochs": chosen.get("epochs") and f"{chosen['epochs']} epochs/task",
            "batch_size": chosen.get("batch_size") and f"batch {chosen['batch_size']}"}
    size = f"at most {SMALL_IMAGE_SIDE} px" if kind == "small" else f"over {SMALL_IMAGE_SIDE} px"
    print(f"{args.dataset} {stream.name!r}: {height}x{width} {colour}, {stream.num_classes} classes in "
          f"{stream.num_tasks} tasks -> defaults for images of {size}: {', '.join(v for v in said.values() if v)}; "
          f"override with {'/'.join('--' + k.replace('_', '-') for k in chosen)}", file=sys.stderr, flush=True)
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

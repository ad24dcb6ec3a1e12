"""Command-line plumbing shared by ``search/run.py`` and ``search/rerun.py``.

- the dataset/protocol options and their per-dataset defaults (the GTSRB course
  notebook protocol: classes 0..39, 5 tasks of 8, SimpleCNN, 5 epochs; iCaRL's
  CIFAR-100 protocol: 10 tasks of 10, ResNet-32, flips allowed);
- ``--set key=value`` parsing;
- ``cli_main``: turns every expected failure into ONE line on stderr and exit 2.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


# The CLI's error type and printer live in the leaf package (core.cli), so that
# every entry point shares them; re-exported for the two search CLIs.
from core.cli import cli_main, format_matrix, format_metrics  # noqa: E402,F401
from core.errors import UsageError  # noqa: E402,F401


# Defaults per dataset; every value can be overridden on the command line.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "digits": {"classes": None, "tasks": 5, "backbone": "simplecnn", "epochs": 8, "augment": "crop", "batch_size": 64},
    "synthetic": {"classes": None, "tasks": 3, "backbone": "simplecnn", "epochs": 2, "augment": "none", "batch_size": 32},
    "gtsrb": {"classes": 40, "tasks": 5, "backbone": "simplecnn", "epochs": 5, "augment": "crop", "batch_size": 128},
    "cifar100": {"classes": None, "tasks": 10, "backbone": "resnet32", "epochs": 70, "augment": "crop+flip", "batch_size": 128},
    # The PackNet sequence (Mallya & Lazebnik 2018): one ImageFolder tree per task
    # (--folders), VGG-16; 64 px by default so that it runs on a CPU (paper: 224).
    "folders": {"classes": None, "tasks": None, "backbone": "vgg16", "epochs": 10, "augment": "crop+flip", "batch_size": 32},
}


def add_protocol_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("dataset and protocol")
    g.add_argument("--dataset", default="digits", choices=sorted(PROTOCOLS),
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


def protocol_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The resolved protocol: dataset defaults overridden by explicit flags."""
    proto = dict(PROTOCOLS[args.dataset])
    for key in ("classes", "tasks", "epochs", "backbone", "augment", "batch_size"):
        value = getattr(args, key)
        if value is not None:
            proto[key] = value
    task_sizes = None
    if args.dataset == "folders":
        if not args.folders:
            raise UsageError("--dataset folders needs --folders ROOT1,ROOT2,... (one ImageFolder tree per task)")
        if args.tasks or args.task_sizes or args.classes:
            raise UsageError("with --dataset folders the tasks are the folders: drop --tasks/--task-sizes/--classes")
        if args.image_size < 1:
            raise UsageError(f"--image-size must be positive, got {args.image_size}")
        from strategies.loop import MIN_IMAGE_SIDE  # the loop's own limit, checked here before images are read

        smallest = MIN_IMAGE_SIDE.get(proto["backbone"], 1)
        if args.image_size < smallest:
            raise UsageError(f"--image-size {args.image_size} is too small for {proto['backbone']} "
                             f"(its poolings need at least {smallest})")
        proto.update(folders=[r for r in args.folders.split(",") if r], image_size=args.image_size)
    elif args.folders:
        raise UsageError("--folders is only used with --dataset folders")
    if args.task_sizes:
        try:
            task_sizes = [int(v) for v in args.task_sizes.split(",")]
        except ValueError:
            raise UsageError(f"--task-sizes {args.task_sizes!r} must be comma-separated integers") from None
        proto["tasks"] = None
    proto.update(
        dataset=args.dataset, data_dir=args.data_dir, download=args.download, task_sizes=task_sizes,
        class_order=args.class_order, stream_seed=args.stream_seed, val_fraction=args.val_fraction,
        precision=args.precision, device=args.device, threads=args.threads, pretrained=args.pretrained,
    )
    if proto["classes"] is not None and proto["classes"] < 1:
        raise UsageError(f"--classes must be positive, got {proto['classes']}")
    if proto["tasks"] is not None and proto["tasks"] < 1:
        raise UsageError(f"--tasks must be positive, got {proto['tasks']}")
    if proto["stream_seed"] < 0:
        raise UsageError(f"--stream-seed must be >= 0, got {proto['stream_seed']}")
    if not 0.0 <= proto["val_fraction"] < 1.0:
        raise UsageError(f"--val-fraction must be in [0, 1), got {proto['val_fraction']}")
    return proto


def load_arrays(proto: dict[str, Any]):
    from datasets import load_dataset, load_folder_arrays

    if proto["dataset"] == "folders":
        arrays, sizes = load_folder_arrays(proto["folders"], proto["image_size"])
        # One task per root: the task sizes are the roots' class counts. Kept in
        # the protocol so the results folder says exactly what was run.
        proto["task_sizes"] = sizes
        return arrays
    return load_dataset(proto["dataset"], data_dir=proto["data_dir"], download=proto["download"])


def build_protocol_stream(arrays, proto: dict[str, Any], val_fraction: float | None = None):
    from datasets import build_stream

    return build_stream(
        arrays,
        num_tasks=proto["tasks"],
        task_sizes=proto["task_sizes"],
        classes=proto["classes"],
        class_order=proto["class_order"],
        seed=proto["stream_seed"],
        val_fraction=proto["val_fraction"] if val_fraction is None else val_fraction,
    )


def loop_config(proto: dict[str, Any], seed: int, eval_split: str, threads: int | None = None, device: str | None = None):
    from strategies.loop import LoopConfig
    from core.config import config_from_dict

    return config_from_dict(LoopConfig, {
        "epochs": proto["epochs"], "batch_size": proto["batch_size"], "backbone": proto["backbone"],
        "augment": proto["augment"], "precision": proto["precision"], "eval_split": eval_split,
        "pretrained": proto.get("pretrained", False),
        "device": device or proto["device"], "threads": proto["threads"] if threads is None else threads,
        "seed": seed,
    }, owner="protocol")


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

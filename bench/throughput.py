"""Training throughput of the project's loop against the bare-model ceiling and a
conventional DataLoader pipeline (issue "Speed", bench 1).

Three ways to train the same network (SGD, batch 128, crop augmentation) on
GTSRB-shaped images (32 x 32 x 3 uint8; random pixels: throughput does not
depend on content), measured in ONE process with the variants interleaved
(``--repeats`` rounds), so machine noise hits all of them alike:

- ``ceiling``: the bare model's forward + cross-entropy + backward + SGD step on a
  float tensor already in memory (no data handling at all);
- ``loop``: the project's loop (``strategies.loop.run`` with ``finetune`` on a
  one-task stream): uint8 tensors, batched random crop, normalisation,
  channels_last, optional bf16 autocast; images/s of its training phase;
- ``dataloader``: what the course notebook did: ``torch.utils.data.DataLoader``
  over a Dataset of PIL images with per-image torchvision transforms
  (RandomCrop(32, padding=4), ToTensor, Normalize), then the same model step.

Prints images/s per variant (median over rounds) and the ratios loop/ceiling and
loop/dataloader. Usage:

    python bench/throughput.py                       # simplecnn and resnet32, fp32
    python bench/throughput.py --precision bf16 --backbones simplecnn
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import strategies  # noqa: E402,F401  (registration)
from datasets import DatasetArrays, build_stream  # noqa: E402
from datasets._tv import import_torchvision  # noqa: E402
from strategies.loop import LoopConfig, make_strategy, run  # noqa: E402
from strategies.networks import IncrementalNet, build_backbone  # noqa: E402

NUM_CLASSES = 8
BATCH = 128


def make_arrays(n: int, seed: int = 0) -> DatasetArrays:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    y = np.arange(n) % NUM_CLASSES
    return DatasetArrays(name="bench", x_train=x, y_train=y, x_test=x[:BATCH], y_test=y[:BATCH])


def autocast(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def new_model(backbone: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = IncrementalNet(build_backbone(backbone, in_channels=3))
    model.add_classes(NUM_CLASSES)
    return model.to(memory_format=torch.channels_last)


def bench_ceiling(backbone: str, n: int, precision: str) -> float:
    model = new_model(backbone)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(BATCH, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.arange(BATCH) % NUM_CLASSES
    steps = n // BATCH
    t0 = time.perf_counter()
    for _ in range(steps):
        with autocast(precision):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    loss.item()
    return steps * BATCH / (time.perf_counter() - t0)


def bench_loop(backbone: str, stream, precision: str, threads: int) -> float:
    cfg = LoopConfig(epochs=1, batch_size=BATCH, backbone=backbone, eval_split="test", precision=precision,
                     threads=threads, augment="crop", crop_padding=4, seed=0)
    strategy = make_strategy("finetune", {"lr": 0.01, "lr_schedule": "constant"}, stream, cfg)
    result = run(strategy, stream, cfg, log=None)
    timing = result.timings[0]
    return timing["images_trained"] / timing["train_s"]


class PILDataset(torch.utils.data.Dataset):
    """Per-image PIL + torchvision transforms, as the course notebook did."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        tv = import_torchvision()
        from PIL import Image

        self.images = [Image.fromarray(img) for img in x]
        self.y = y
        self.transform = tv.transforms.Compose([
            tv.transforms.RandomCrop(32, padding=4),
            tv.transforms.ToTensor(),
            tv.transforms.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), int(self.y[i])


def bench_dataloader(backbone: str, dataset: PILDataset, precision: str, workers: int) -> float:
    model = new_model(backbone)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers, drop_last=True)
    images = 0
    t0 = time.perf_counter()
    for x, y in loader:
        x = x.contiguous(memory_format=torch.channels_last)
        with autocast(precision):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        images += len(y)
    loss.item()
    return images / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", default="simplecnn,resnet32")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--images", type=int, default=12800, help="training images per measurement")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median reported)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes of the conventional pipeline")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    arrays = make_arrays(args.images)
    stream = build_stream(arrays, num_tasks=1, val_fraction=0.0, seed=0)
    dataset = PILDataset(arrays.x_train, arrays.y_train)
    from core.machine import machine_line
    print(f"# {machine_line()}")
    print(f"# training throughput, images/s (median of {args.repeats} interleaved rounds, {args.images} images each)")
    print(f"# torch {torch.__version__}, {args.threads} threads, {args.precision}, batch {BATCH}, 32x32x3, "
          f"DataLoader workers {args.workers}")
    print(f"{'backbone':10s} {'ceiling':>9s} {'loop':>9s} {'dataloader':>11s} {'loop/ceiling':>13s} {'loop/dataloader':>16s}")
    for backbone in args.backbones.split(","):
        rates: dict[str, list[float]] = {"ceiling": [], "loop": [], "dataloader": []}
        bench_ceiling(backbone, 4 * BATCH, args.precision)  # warm-up (allocator, oneDNN kernels)
        for _ in range(args.repeats):
            rates["ceiling"].append(bench_ceiling(backbone, args.images, args.precision))
            rates["loop"].append(bench_loop(backbone, stream, args.precision, args.threads))
            rates["dataloader"].append(bench_dataloader(backbone, dataset, args.precision, args.workers))
        med = {k: statistics.median(v) for k, v in rates.items()}
        print(f"{backbone:10s} {med['ceiling']:9.0f} {med['loop']:9.0f} {med['dataloader']:11.0f} "
              f"{med['loop'] / med['ceiling']:13.2f} {med['loop'] / med['dataloader']:16.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

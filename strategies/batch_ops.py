"""Whole-batch tensor ops on uint8 images: augmentation and model-input preparation.

Images stay uint8 tensors in memory (on the GPU when there is one) and
are augmented per batch with tensor ops, instead of per-image PIL transforms in
DataLoader workers. The augmentation is the standard CIFAR one (He et al. 2016,
§4.2): pad by ``padding`` pixels and take a random crop of the original size;
horizontal flips are optional and OFF for traffic signs, where several classes
are mirror pairs (keep left/right, turn left/right).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop with zero padding, one offset per image, no Python loop.

    Works on any dtype (uint8 here). Offsets are drawn on the CPU generator and the
    gather runs on the batch's device.
    """
    if padding <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    off = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(x.device)
    rows = off[0][:, None] + torch.arange(h, device=x.device)[None, :]  # n x h
    cols = off[1][:, None] + torch.arange(w, device=x.device)[None, :]  # n x w
    batch_idx = torch.arange(n, device=x.device)[:, None, None]
    # Gather on N x H x W x C (channels last), then back to N x C x H x W.
    gathered = padded.permute(0, 2, 3, 1)[batch_idx, rows[:, :, None], cols[:, None, :]]
    return gathered.permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


class InputNormalizer:
    """uint8 N x C x H x W -> float, normalised with the stream's channel stats."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device, channels_last: bool) -> None:
        # Fold /255 and the normalisation into one multiply-add.
        std_t = torch.tensor(std, dtype=torch.float32, device=device)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device)
        self.scale = (1.0 / (255.0 * std_t)).view(1, -1, 1, 1)
        self.shift = (-mean_t / std_t).view(1, -1, 1, 1)
        self.channels_last = channels_last

    def __call__(self, x_uint8: torch.Tensor) -> torch.Tensor:
        x = torch.addcmul(self.shift, x_uint8.float(), self.scale)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

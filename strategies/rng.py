"""Per-purpose random-number generators for strategies.

Every random choice a strategy makes for itself (exemplar sampling, Fisher
samples, DER's re-balancing batches, PackNet's retraining batches, ...) draws
from its own ``torch.Generator``, seeded from ``(run seed, purpose, key)``
through numpy's ``SeedSequence`` -- the pattern ``datasets/builder.py`` uses for
the stream. Separate streams mean that a change in one purpose (say, one more
exemplar-selection draw) never shifts the random numbers of another, and no
strategy needs to invent a seed offset that might collide with another's.
The loop's own generator (batch order, augmentation) is seeded by the run seed.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch


def purpose_seed(seed: int, purpose: str, key: int = 0) -> int:
    """A 63-bit seed for ``purpose`` (a short name such as ``"der/balance"``)
    of the run seeded ``seed``; ``key`` separates instances (a task index)."""
    purpose_id = zlib.crc32(purpose.encode("utf-8"))  # stable across processes, unlike hash()
    state = np.random.SeedSequence([int(seed), purpose_id, int(key)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def purpose_generator(seed: int, purpose: str, key: int = 0) -> torch.Generator:
    """A CPU ``torch.Generator`` for one purpose of one run (see ``purpose_seed``)."""
    return torch.Generator().manual_seed(purpose_seed(seed, purpose, key))

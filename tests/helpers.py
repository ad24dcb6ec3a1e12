"""Small helpers shared by the strategy tests (the fixtures are in conftest.py)."""
from __future__ import annotations

from strategies.loop import LoopConfig


def tiny_loop_config(**overrides) -> LoopConfig:
    """The loop settings of the synthetic-stream tests: 2 epochs, batch 32, no
    augmentation, scored on the validation split, seed 0."""
    base = dict(epochs=2, batch_size=32, augment="none", eval_split="val", seed=0)
    base.update(overrides)
    return LoopConfig(**base)

"""Which knobs a search may reach, and which side of the protocol line each is on.

A run is described by three typed objects (docs/ARCHITECTURE.md): the stream
protocol, the loop config (``strategies.loop.LoopConfig``) and the strategy
config. A search samples strategy-config fields; it may also override a few
loop-config fields per trial, the ``LOOP_KNOBS`` below. A trial's sampled and
fixed values (its ``params``) are then split by name: loop knobs go to that
trial's ``LoopConfig``, the rest to its strategy config. A strategy config may
therefore not have a field named like a loop knob (``strategies.base.register``
refuses one), or the split would be ambiguous.

Every knob a search touches is one of three kinds, recorded per key in
search.json (``knob_kinds``) and shown by the report:

- ``protocol``: what defines the benchmark -- the loop's ``epochs`` per task
  and the shares of each class's training and evaluation images a run sees
  (``train_fraction``, ``eval_fraction``: 1 in the benchmark, less for a cheaper
  fidelity); classes, tasks and the evaluation split are stream-protocol fields
  no trial can change. Two searches with different epochs measure different
  benchmarks, so a protocol knob is fixed by the protocol flags (``--epochs``)
  and a search may set or range it only when asked (``--search-protocol
  epochs``);
- ``training``: how any method is optimised -- batch size and augmentation
  (loop knobs), and the fields every strategy config inherits from
  ``StrategyConfig`` (optimiser, learning rate and its schedule, momentum,
  weight decay): hyperparameters a method may tune;
- ``strategy``: the method's own knobs (memory, distillation weight, ...).

Nothing here imports torch: the command lines classify and reject a key before
any heavy import.
"""
from __future__ import annotations

from typing import Any

# Loop-config fields a trial may override. Training knobs: the batch size, the
# augmentation mode and the random-crop padding (the crop's strength).
TRAINING_LOOP_KNOBS = ("batch_size", "augment", "crop_padding")
# Protocol knobs: part of the benchmark; searched only on request (--search-protocol).
PROTOCOL_KNOBS = ("epochs", "train_fraction", "eval_fraction")
LOOP_KNOBS = TRAINING_LOOP_KNOBS + PROTOCOL_KNOBS

KINDS = ("protocol", "training", "strategy")


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A trial's params -> (strategy-config overrides, loop-config overrides)."""
    strategy = {k: v for k, v in params.items() if k not in LOOP_KNOBS}
    loop = {k: v for k, v in params.items() if k in LOOP_KNOBS}
    return strategy, loop


def knob_kind(key: str, training_fields: tuple[str, ...] | list[str]) -> str:
    """``protocol``, ``training`` or ``strategy`` for a searched or fixed key;
    ``training_fields`` are the fields of the shared ``StrategyConfig``."""
    if key in PROTOCOL_KNOBS:
        return "protocol"
    if key in TRAINING_LOOP_KNOBS or key in training_fields:
        return "training"
    return "strategy"

"""Per-task checkpoints of a run: save after task k, continue bit-identically.

``LoopState`` is everything the one loop (``strategies/loop.py``) needs to go on
after a task whose accuracy row is filled:

- the whole ``Strategy`` object, pickled generically with ``torch.save`` (model,
  optimiser, exemplar memory, the old model for distillation, PackNet's masks
  and per-task BatchNorm, EWC's Fisher and anchors, DER's extractors, the
  strategy's own seeded ``torch.Generator``\\ s -- no per-strategy code);
- the ``RunResult`` so far (the accuracy matrices of the tasks done);
- the random-number states: the loop's shuffle/augmentation generator, the
  global torch CPU RNG (new heads and backbones are initialised from it), the
  CUDA RNGs when CUDA is in use, and numpy's and Python's global RNGs (no
  strategy draws from them today; they are kept so that one that does later
  stays reproducible).

The stream's data are NOT stored: a strategy keeps the ``Task`` objects it has
seen (``Strategy.tasks``), and each ``Task`` is pickled as a reference to its
position in the stream and resolved against the stream given to ``load_state``
(the stream is rebuilt from the same seed on resume, or passed again by the
search). So a checkpoint holds the model(s), the memory and the bookkeeping,
not the training set.

The loop calls ``checkpoint(state)`` after each task and takes ``resume=state``
to start at the next task. ``state`` refers to the LIVE strategy and result:
serialise it (``save_state``) before the callback returns.

``save_state`` writes a temporary file in the same folder and renames it over
the old one (after fsync), like ``strategies/result.py``: a crash or a full
disk mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import contextvars
import copy
import dataclasses
import io
import pickle
import random
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datasets.stream import Stream, Task
from core.files import write_bytes_atomic
from core.result import RunResult

STATE_FORMAT = "clsearch-loopstate/1"
STATE_FILE = "loop_state.pt"


@dataclasses.dataclass
class LoopState:
    """A run after ``result.tasks_done`` tasks; see the module docstring."""

    strategy: Any  # strategies.base.Strategy (not imported: base imports nothing from here)
    result: RunResult
    loop_rng: torch.Tensor  # state of the loop's shuffle / augmentation generator
    torch_rng: torch.Tensor  # torch.get_rng_state()
    cuda_rng: list[torch.Tensor] | None = None
    numpy_rng: tuple | None = None
    python_rng: tuple | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)  # the caller's bookkeeping (e.g. restores)

    @property
    def tasks_done(self) -> int:
        return self.result.tasks_done


def capture(strategy, result: RunResult, loop_gen: torch.Generator) -> LoopState:
    """The state of a run now (between tasks). The result is copied; the
    strategy is the live object (serialise before training goes on)."""
    return LoopState(
        strategy=strategy,
        result=copy.deepcopy(result),
        loop_rng=loop_gen.get_state(),
        torch_rng=torch.get_rng_state(),
        cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
        numpy_rng=np.random.get_state(),
        python_rng=random.getstate(),
    )


def restore_rngs(state: LoopState) -> torch.Generator:
    """Set the global RNGs to the saved states; return the loop's generator."""
    torch.set_rng_state(state.torch_rng)
    if state.cuda_rng is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state.cuda_rng)
    if state.numpy_rng is not None:
        np.random.set_state(state.numpy_rng)
    if state.python_rng is not None:
        random.setstate(state.python_rng)
    gen = torch.Generator()
    gen.set_state(state.loop_rng)
    return gen


# -- Task objects by reference ------------------------------------------------------

_LOAD_STREAM: contextvars.ContextVar[Stream | None] = contextvars.ContextVar("_LOAD_STREAM", default=None)


def _stream_task(index: int, task_id: int, train_size: int) -> Task:
    """Unpickling side of a Task reference: the task of the stream being loaded against."""
    stream = _LOAD_STREAM.get()
    if stream is None:
        raise RuntimeError("a checkpoint with stream task references must be read with load_state(path, stream)")
    if index >= stream.num_tasks:
        raise ValueError(f"checkpoint refers to task {index} but the stream has {stream.num_tasks} tasks")
    task = stream.tasks[index]
    if task.task_id != task_id or len(task.train) != train_size:
        raise ValueError(f"checkpoint task {index} (id {task_id}, {train_size} training images) does not match "
                         f"the stream's (id {task.task_id}, {len(task.train)}): another stream?")
    return task


def _make_pickler_module(stream: Stream) -> types.ModuleType:
    """A ``pickle_module`` for ``torch.save`` whose Pickler stores the stream's
    Task objects as references (torch's own Pickler subclass adds storages)."""
    position = {id(t): i for i, t in enumerate(stream.tasks)}
    by_task_id = {t.task_id: i for i, t in enumerate(stream.tasks)}

    class TaskRefPickler(pickle.Pickler):
        def reducer_override(self, obj):
            if type(obj) is Task:
                # Identity first (the loop's own tasks); the same task id and size
                # otherwise (a caller's copy of the stream, e.g. moved to a device).
                i = position.get(id(obj))
                if i is None:
                    i = by_task_id.get(obj.task_id)
                    if i is None or len(stream.tasks[i].train) != len(obj.train):
                        return NotImplemented  # not a task of this stream: pickled in full
                return _stream_task, (i, obj.task_id, len(obj.train))
            return NotImplemented

    module = types.ModuleType("_taskref_pickle")
    module.__dict__.update({k: getattr(pickle, k) for k in dir(pickle) if not k.startswith("__")})
    module.Pickler = TaskRefPickler
    return module


def state_bytes(state: LoopState, stream: Stream) -> bytes:
    """Serialise ``state`` (stream tasks by reference) to bytes."""
    buf = io.BytesIO()
    payload = {"format": STATE_FORMAT, **{f.name: getattr(state, f.name) for f in dataclasses.fields(state)}}
    torch.save(payload, buf, pickle_module=_make_pickler_module(stream))
    return buf.getvalue()


def state_from_bytes(data: bytes, stream: Stream, device: torch.device | str | None = None) -> LoopState:
    """Inverse of ``state_bytes``; tensors go to ``device`` (default: as saved)."""
    token = _LOAD_STREAM.set(stream)
    try:
        payload = torch.load(io.BytesIO(data), map_location=device, weights_only=False)
    finally:
        _LOAD_STREAM.reset(token)
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise ValueError(f"not a loop state of format {STATE_FORMAT!r}")
    payload.pop("format")
    return LoopState(**payload)


def save_state(state: LoopState, path: str | Path, stream: Stream) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    return write_bytes_atomic(path, state_bytes(state, stream))


def load_state(path: str | Path, stream: Stream, device: torch.device | str | None = None) -> LoopState:
    """Read a state written by ``save_state``, resolving task references in ``stream``."""
    return state_from_bytes(Path(path).read_bytes(), stream, device)

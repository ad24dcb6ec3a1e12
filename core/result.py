"""The result record of one run and its on-disk form (docs/RESULT_FORMAT.md).

Written atomically (``core.files``) so a crash or a full disk never leaves a
half-written ``result.json`` that breaks a report. ``SEARCH_FORMAT`` is the
format tag of a search folder's ``search.json``; both tags live here only.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from core.machine import cpu_info

RESULT_FORMAT = "clsearch-result/1"
SEARCH_FORMAT = "clsearch-search/2"

# A search trial's number: its Optuna trial number (0, 1, 2, ... in the order
# the sampler proposed the trials, which is the order Tune starts them). The
# searcher puts it into the trial's config under this key; the trainable takes
# it out of the knobs and records it in result.json, and trials.csv, the live
# log, the report and ``rerun.py --pick`` all show the same number.
TRIAL_NUMBER_KEY = "trial_number"
# A confirmation trial (search/confirm.py) reruns a front candidate with another
# training seed: its config carries the candidate's trial number under
# CONFIRMS_KEY and the loop seed under CONFIRM_SEED_KEY; its result.json records
# ``"confirms": <candidate's trial number>`` (its seed is in ``protocol.seed``).
# A main trial of the search has no "confirms" key.
CONFIRMS_KEY = "confirms"
CONFIRM_SEED_KEY = "confirm_seed"
# A cross-method search (search/run.py --method a,b,c) samples the method first:
# its trial's config carries the method under METHOD_KEY (never a knob: the
# trainable builds that method with the other keys; result.json records it as
# its top-level "method", not among the params).
METHOD_KEY = "method"
# The keys of a trial's config that are no knobs.
META_KEYS = (TRIAL_NUMBER_KEY, CONFIRMS_KEY, CONFIRM_SEED_KEY, METHOD_KEY)

# A search's Optuna study: an Optuna journal file in the search folder (search/
# searcher.py), named in search.json under ``OPTUNA_STUDY_KEY`` as
# {"storage": OPTUNA_STUDY_FILE, "study_name": <the search's name>}.
OPTUNA_STUDY_FILE = "optuna-study.log"
OPTUNA_STUDY_KEY = "optuna_study"


@dataclasses.dataclass
class RunResult:
    method: str
    config: dict[str, Any]
    protocol: dict[str, Any]
    stream: dict[str, Any]
    task_incremental_only: bool
    eval_split: str
    acc_class_il: list[list[float | None]] = dataclasses.field(default_factory=list)
    acc_task_il: list[list[float | None]] = dataclasses.field(default_factory=list)
    eval_sizes: list[int] = dataclasses.field(default_factory=list)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    timings: list[dict[str, float]] = dataclasses.field(default_factory=list)
    train_time_s: float = 0.0
    memory_size: int = 0
    num_params: int = 0
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    status: str = "running"
    error: str | None = None
    environment: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def tasks_done(self) -> int:
        return len(self.acc_task_il)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d = {"format": RESULT_FORMAT, **d}
        return _jsonable(d)


# The parts of a task's timing record (strategies/loop.py) that make up its wall time.
TASK_SECOND_KEYS = ("begin_task_s", "train_s", "end_task_s", "eval_s")


def task_seconds(timing: dict[str, Any]) -> float:
    """One task's seconds from its timing record: begin, training phases, end
    of task and evaluation (a part not recorded counts 0)."""
    return sum(float(timing.get(k) or 0.0) for k in TASK_SECOND_KEYS)


def metrics_key(task_incremental_only: bool) -> str:
    """Which metrics block describes a method: a task-incremental-only method
    (PackNet) has no class-IL predictions, so its task-IL block stands in."""
    return "task_il" if task_incremental_only else "class_il"


def _jsonable(obj: Any) -> Any:
    """NaN/inf -> None (strict JSON), tuples -> lists, numpy/torch scalars -> python."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else obj
    if hasattr(obj, "item") and callable(obj.item):
        return _jsonable(obj.item())
    return obj


def _package_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment_info() -> dict[str, Any]:
    """Versions and git commit: what is needed to reproduce a result."""
    import numpy

    # torch is read from the running process (a run has imported it); the leaf
    # package never imports it itself.
    torch = sys.modules.get("torch")
    cuda = torch is not None and torch.cuda.is_available()
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__ if torch is not None else _package_version("torch"),
        "numpy": numpy.__version__,
        "cpu_count": os.cpu_count(),
        # The CPU model and its speed features (AMX, AVX512-BF16): timings and
        # bf16 behaviour hold for this CPU only.
        "cpu": cpu_info(),
        "cuda": torch.cuda.get_device_name(0) if cuda else None,
    }
    # Versions of the search stack from the installed package metadata: importing
    # ray (~1 s, and not needed by a direct run) just to read its version is waste.
    for package in ("ray", "optuna"):
        info[package] = _package_version(package)
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            info["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


"""The result record of one run and its on-disk form (docs/RESULT_FORMAT.md).

Written atomically (temporary file in the same folder, fsync, rename) so a crash
or a full disk never leaves a half-written ``result.json`` that breaks a report.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

RESULT_FORMAT = "clsearch-result/1"


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


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1, allow_nan=False))


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename: readers
    see the old file or the new one, never half of one (a full disk or a killed
    writer leaves the old file and at most a hidden ``.NAME.*.tmp``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def environment_info() -> dict[str, Any]:
    """Versions and git commit: what is needed to reproduce a result."""
    import numpy
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    # Versions of the search stack from the installed package metadata: importing
    # ray (~1 s, and not needed by a direct run) just to read its version is waste.
    for package in ("ray", "optuna"):
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = None
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

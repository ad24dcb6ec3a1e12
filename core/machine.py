"""What machine a figure was measured on: CPU model, the instruction-set
features that change speed (AMX, AVX512-BF16: bf16 autocast is fast only
with them), the CPUs this process may use, and the GPU.

Speed and bf16 facts hold for the CPU that showed them (the development
machines change CPU between sessions), so every result.json records this
(``core.result.environment_info``) and every bench script prints it first.
Read from /proc/cpuinfo: no subprocess, no torch.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

# Flags worth naming next to a speed figure (Linux /proc/cpuinfo names).
SPEED_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")


def cpu_info(cpuinfo: str | None = None) -> dict[str, Any]:
    """``{"model": ..., "features": [...], "cpus": N}``; ``cpuinfo``: the text of
    /proc/cpuinfo (read when None; an empty dict's worth of unknowns off Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    model, flags = platform.processor() or None, set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key == "flags":
            flags = set(value.split())
        if model and flags:
            break
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    return {"model": model, "features": [f for f in SPEED_FLAGS if f in flags], "cpus": cpus}


def machine_line() -> str:
    """One line for the top of a bench table: CPU model, speed features, CPUs, GPU."""
    info = cpu_info()
    features = ", ".join(info["features"]) or "none of " + "/".join(SPEED_FLAGS)
    gpu = ""
    torch = sys.modules.get("torch")  # read from the process: this module never imports torch
    if torch is not None and torch.cuda.is_available():
        gpu = f"; GPU {torch.cuda.get_device_name(0)}"
    return f"machine: {info['model'] or 'unknown CPU'} ({features}); {info['cpus']} CPUs{gpu}"

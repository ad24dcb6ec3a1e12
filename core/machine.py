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


# Flags with which bf16 autocast runs natively on a CPU; without any of them
# oneDNN emulates bf16 and a run is several times slower than in fp32
# (bench/README.md, "bf16 autocast against fp32", the AVX2-only AMD EPYC row).
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def slow_bf16_warning(precision: str, device_type: str, info: dict[str, Any] | None = None) -> str | None:
    """A one-line warning when bf16 autocast would run emulated on this CPU, else None.

    Only a run on the CPU is concerned (a GPU has its own bf16 units); ``info``
    is ``cpu_info()`` (read when None)."""
    if precision != "bf16" or device_type != "cpu":
        return None
    info = cpu_info() if info is None else info
    if any(flag in info["features"] for flag in NATIVE_BF16_FLAGS):
        return None
    return (f"warning: --precision bf16 on {info['model'] or 'this CPU'}, which has neither AVX512-BF16 nor AMX: "
            "bf16 autocast is emulated there and trains several times slower than fp32 (8.6x measured on an "
            "AVX2-only AMD EPYC); use --precision fp32 on this machine")


def machine_line() -> str:
    """One line for the top of a bench table: CPU model, speed features, CPUs, GPU."""
    info = cpu_info()
    features = ", ".join(info["features"]) or "none of " + "/".join(SPEED_FLAGS)
    gpu = ""
    torch = sys.modules.get("torch")  # read from the process: this module never imports torch
    if torch is not None and torch.cuda.is_available():
        gpu = f"; GPU {torch.cuda.get_device_name(0)}"
    return f"machine: {info['model'] or 'unknown CPU'} ({features}); {info['cpus']} CPUs{gpu}"

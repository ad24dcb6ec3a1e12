"""core/machine.py: the CPU a figure was measured on, read from /proc/cpuinfo."""
from __future__ import annotations

from core.machine import SPEED_FLAGS, cpu_info, machine_line

INTEL_AMX = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
"""
AMD_EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse2 avx avx2 avx512f avx512_bf16
"""


def test_cpu_info_names_the_model_and_the_bf16_features():
    intel = cpu_info(INTEL_AMX)
    assert intel["model"] == "Intel(R) Xeon(R) Processor"
    assert intel["features"] == ["amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2"]
    amd = cpu_info(AMD_EPYC)
    assert amd["model"] == "AMD EPYC 9B14"
    assert amd["features"] == ["avx512_bf16", "avx512f", "avx2"]  # no AMX: bf16 autocast is not the fast path
    assert cpu_info("")["features"] == [] and isinstance(cpu_info("")["cpus"], int)


def test_this_machine_is_described_and_recorded_in_results():
    from core.result import environment_info

    info = cpu_info()
    assert set(info["features"]) <= set(SPEED_FLAGS) and info["cpus"] >= 1
    assert machine_line().startswith("machine: ") and f"{info['cpus']} CPUs" in machine_line()
    assert environment_info()["cpu"] == info  # every result.json says which CPU it ran on

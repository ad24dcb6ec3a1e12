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


AMD_AVX2_ONLY = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 fma
"""


def test_bf16_on_a_cpu_without_native_bf16_is_warned_of_once_in_one_line():
    from core.machine import slow_bf16_warning

    avx2 = cpu_info(AMD_AVX2_ONLY)
    message = slow_bf16_warning("bf16", "cpu", avx2)
    assert message is not None and "\n" not in message
    assert message.startswith("warning: --precision bf16 on AMD EPYC") and "--precision fp32" in message
    # Native bf16 (AMX or AVX512-BF16), fp32, or a GPU: nothing to say.
    assert slow_bf16_warning("bf16", "cpu", cpu_info(INTEL_AMX)) is None
    assert slow_bf16_warning("bf16", "cpu", cpu_info(AMD_EPYC)) is None
    assert slow_bf16_warning("fp32", "cpu", avx2) is None
    assert slow_bf16_warning("bf16", "cuda", avx2) is None


def test_an_explicit_precision_overrides_a_search_s_on_rerun_and_no_flag_keeps_it():
    from search.rerun import build_parser, hardware_overrides

    parser = build_parser()
    assert hardware_overrides(parser.parse_args(["some-search"])) == {}
    assert hardware_overrides(parser.parse_args(["some-search", "--precision", "fp32"])) == {"precision": "fp32"}
    assert hardware_overrides(parser.parse_args(["some-search", "--precision", "bf16", "--threads", "1"])) == \
        {"precision": "bf16", "threads": 1}


def test_a_direct_bf16_run_on_such_a_cpu_prints_the_warning_and_still_trains(tmp_path, monkeypatch, capsys):
    import json

    import core.machine
    from search import rerun

    monkeypatch.delenv("CL_DATA_DIR", raising=False)
    monkeypatch.setattr(core.machine, "cpu_info", lambda cpuinfo=None: cpu_info(AMD_AVX2_ONLY))  # this module's name: the real parser
    assert rerun.main(["--method", "finetune", "--dataset", "synthetic", "--epochs", "1", "--threads", "1",
                       "--device", "cpu", "--precision", "bf16", "--quiet", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: --precision bf16 on AMD EPYC") == 1
    result = json.loads((tmp_path / "seed0" / "result.json").read_text())
    assert result["status"] == "completed" and result["protocol"]["precision"] == "bf16"  # a warning, not a refusal


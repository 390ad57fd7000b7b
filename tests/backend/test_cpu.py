"""CPU capability detection and the precision ``auto`` picks; simulated CPUs (no global state involved)."""

from __future__ import annotations

from pathlib import Path

import pytest

from facerest_cli.backend.cpu import CpuCaps, caps_from_env, choose_precision, detect_cpu_caps, parse_cpu_flags
from facerest_cli.errors import UsageError

SAPPHIRE_RAPIDS = "fpu vme sse sse2 avx avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8 avx512_fp16"
ZEN4 = "fpu sse sse2 avx avx2 avx512f avx512dq avx512_bf16 avx512_vnni"
SKYLAKE_X = "fpu sse sse2 avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl"
HASWELL = "fpu sse sse2 avx avx2 fma"


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    p = tmp_path / "cpuinfo"
    block = f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\n"
    p.write_text(block + block.replace(": 0", ": 1"))
    return p


@pytest.mark.parametrize(
    ("flags", "amx", "avx512_bf16", "auto"),
    [(SAPPHIRE_RAPIDS, True, True, "bf16"), (ZEN4, False, True, "bf16"), (SKYLAKE_X, False, False, "fp32"),
     (HASWELL, False, False, "fp32")],
)
def test_detection_and_auto_precision_follow_the_cpu_flags(tmp_path, flags, amx, avx512_bf16, auto):
    caps = detect_cpu_caps(_cpuinfo(tmp_path, flags))
    assert (caps.amx, caps.avx512_bf16) == (amx, avx512_bf16)
    assert caps.cores >= 1
    assert set(caps.flags) <= {"amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2"}  # only flags that matter
    for backend in ("torch", "openvino"):
        assert choose_precision("auto", "cpu", caps, backend).precision == auto


def test_no_cpuinfo_means_no_bf16_claimed(tmp_path):
    caps = detect_cpu_caps(tmp_path / "absent")
    assert caps.flags == () and not caps.bf16
    assert choose_precision("auto", "cpu", caps).precision == "fp32"


def test_this_machine_matches_proc_cpuinfo():
    text = Path("/proc/cpuinfo").read_text()
    flags = next(line for line in text.splitlines() if line.startswith("flags")).split(":", 1)[1].split()
    caps = detect_cpu_caps()
    assert caps.avx512_bf16 == ("avx512_bf16" in flags) and caps.amx == ("amx_bf16" in flags)


def test_env_override_simulates_another_cpu():
    bf16_cpu = CpuCaps(flags=("amx_bf16", "avx512_bf16", "avx512f"), cores=8)
    assert caps_from_env({}, bf16_cpu) == bf16_cpu  # unset: detection stands
    none = caps_from_env({"FACEREST_CPU_FLAGS": "none"}, bf16_cpu)
    assert none.flags == () and not none.bf16 and none.cores == 8 and none.source == "FACEREST_CPU_FLAGS"
    only_avx = parse_cpu_flags("-amx_bf16, cores=2", bf16_cpu)
    assert only_avx.flags == ("avx512_bf16", "avx512f") and only_avx.cores == 2 and only_avx.bf16
    added = parse_cpu_flags("none,avx512_bf16", CpuCaps())
    assert added.flags == ("avx512_bf16",) and added.bf16
    with pytest.raises(UsageError, match="unknown flag 'sse9'"):
        parse_cpu_flags("sse9", bf16_cpu)
    with pytest.raises(UsageError, match="cores=0"):
        parse_cpu_flags("cores=0", bf16_cpu)


def test_explicit_bf16_without_bf16_units_warns_on_torch_and_errors_on_openvino():
    plain = CpuCaps(flags=("avx2", "avx512f"), cores=4)
    torch_choice = choose_precision("bf16", "cpu", plain, "torch")
    assert torch_choice.precision == "bf16"
    assert "no AMX or AVX512_BF16" in torch_choice.note and "emulated" in torch_choice.note
    with pytest.raises(UsageError, match=r"--precision bf16: this CPU has no AMX or AVX512_BF16.*--precision fp32"):
        choose_precision("bf16", "cpu", plain, "openvino")
    # With the units, explicit bf16 needs no note on either backend.
    amx = CpuCaps(flags=("amx_bf16",), cores=4)
    assert choose_precision("bf16", "cpu", amx, "openvino") == choose_precision("bf16", "cpu", amx, "torch")
    assert choose_precision("bf16", "cpu", amx, "openvino").note == ""


def test_other_devices_and_bad_values():
    amx = CpuCaps(flags=("amx_bf16",), cores=4)
    assert choose_precision("auto", "cuda", amx).precision == "fp32"  # as today on CUDA
    assert choose_precision("fp16", "cuda:1", amx).precision == "fp16"
    assert choose_precision("fp32", "cpu", amx).precision == "fp32"
    with pytest.raises(UsageError, match="fp16 needs a GPU"):
        choose_precision("fp16", "cpu", amx)
    with pytest.raises(UsageError, match="auto, fp32, bf16 or fp16; got 'int8'"):
        choose_precision("int8", "cpu", amx)
    with pytest.raises(UsageError, match="openvino runs on the CPU only"):
        choose_precision("auto", "cuda", amx, "openvino")


def test_cli_startup_and_package_import_load_no_openvino_or_torch():
    import subprocess
    import sys

    code = ("import sys, facerest_cli, facerest_cli.cli, facerest_cli.backend.cache, facerest_cli.backend.cpu, "
            "facerest_cli.backend.api; print(sorted(m for m in ('openvino', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

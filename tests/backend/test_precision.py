"""Precision policy: simulated CPUs, per-network auto, float32 scopes and the model guards under CPU autocast."""

from __future__ import annotations

import pytest
import torch

from facerest_cli.backend.cpu import CpuCaps


def test_torch_fp32_scopes_run_float32_under_cpu_autocast():
    from facerest_cli.backend.torch_backend import keep_fp32

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ModuleList([torch.nn.Linear(8, 8)]))
    x = torch.randn(2, 8)
    before = net[0](x)
    keep_fp32(net[0], "cpu")
    keep_fp32(net[1], "cpu")  # a ModuleList: each item is wrapped
    keep_fp32(net[0], "cpu")  # idempotent
    assert torch.equal(net[0](x), before)  # no autocast: bit-identical
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net[0](x.bfloat16()).dtype == torch.float32
        assert net[1][0](x).dtype == torch.float32
        assert torch.nn.Linear(8, 8)(x).dtype == torch.bfloat16  # what an unwrapped layer does
    assert list(net.state_dict()) == ["0.weight", "0.bias", "1.0.weight", "1.0.bias"]


def test_model_guards_keep_styles_and_codes_float32_under_cpu_bf16_autocast():
    """The guards in the model files name the tensor's device, so CPU autocast honours them as CUDA's does."""
    from facerest_cli.models.codeformer import adaptive_instance_norm
    from facerest_cli.models.gfpgan import gfpgan_v1_clean
    from facerest_cli.models.stylegan2_ops import ModulatedConv2d

    torch.manual_seed(0)
    gpen_style = ModulatedConv2d(8, 8, 3, style_dim=16)  # GPEN and SGPN
    gfpgan_style = next(m for m in gfpgan_v1_clean(out_size=64, narrow=0.125).modules() if hasattr(m, "scales"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert all(t.dtype == torch.float32 for t in gpen_style.coefficients(torch.randn(2, 16)))
        style = torch.randn(2, gfpgan_style.modulation.in_features)
        assert all(t.dtype == torch.float32 for t in gfpgan_style.scales(style))
        assert torch.nn.functional.linear(style, gfpgan_style.modulation.weight).dtype == torch.bfloat16  # unguarded
        content = torch.randn(1, 4, 8, 8).bfloat16()
        assert adaptive_instance_norm(content, torch.randn(1, 4, 8, 8)).dtype == torch.float32  # style's dtype


def test_simulated_cpu_without_bf16_picks_fp32_in_both_backends(mobilefacenet, session_cache, mobilefacenet_entry):
    import dataclasses

    from facerest_cli.backend.calls import arch_call
    from facerest_cli.errors import UsageError
    from tests.backend.nets import build

    eligible = dataclasses.replace(arch_call("mobilefacenet"), auto_bf16=True)  # as a restorer's policy is
    plain = CpuCaps(flags=("avx2", "avx512f"), cores=2, source="test")
    amx = CpuCaps(flags=("amx_bf16", "avx512_bf16"), cores=2, source="test")
    for backend in ("torch", "openvino"):
        net = build(mobilefacenet, backend, "auto", plain, session_cache, spec=eligible)
        assert net.precision == "fp32" and "no AMX or AVX512_BF16" in net.info.notes[0]
        assert build(mobilefacenet, backend, "auto", amx, session_cache, spec=eligible).precision == "bf16"
    with pytest.raises(UsageError, match="OpenVINO would silently run f32"):
        build(mobilefacenet, "openvino", "bf16", plain, session_cache)
    warned = build(mobilefacenet, "torch", "bf16", plain)
    assert warned.precision == "bf16" and "emulated" in warned.info.notes[0]


def test_auto_keeps_measurement_and_codebook_networks_fp32(mobilefacenet, session_cache, mobilefacenet_entry):
    from facerest_cli.backend.calls import auto_bf16_archs
    from tests.backend.nets import build

    amx = CpuCaps(flags=("amx_bf16", "avx512_bf16"), cores=2, source="test")
    assert auto_bf16_archs() == {"gfpgan_v1_clean", "gpen_bfr_512", "sgpn", "bisenet", "parsenet"}
    net = build(mobilefacenet, "openvino", "auto", amx, session_cache)
    assert net.precision == "fp32" and "mobilefacenet (its precision policy)" in net.info.notes[0]
    assert build(mobilefacenet, "openvino", "bf16", amx, session_cache).precision == "bf16"  # explicit wins

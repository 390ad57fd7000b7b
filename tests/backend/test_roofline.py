"""The bench's ceiling (issue 13): FLOPs per face agree with the official code's count, and the arithmetic that
turns a measured peak into the fastest a face can be."""

from __future__ import annotations

import pytest
import torch

from facerest_cli.backend.cpu import CpuCaps
from facerest_cli.backend.roofline import ceilings, count_gflop, dense_peak
from tests.models.golden import manifest


def test_a_convolution_counts_two_flops_per_multiply_add():
    conv = torch.nn.Conv2d(8, 16, 3, padding=1, bias=False)
    assert count_gflop(conv, torch.zeros(1, 8, 32, 32)) * 1e9 == 2 * 8 * 16 * 9 * 32 * 32


def test_gfpgan_flops_match_the_official_code():
    """checkpoint-formats counted the official GFPGANv1Clean forward (one 512x512 face); ours does the same work."""
    from facerest_cli.backend.calls import arch_call
    from facerest_cli.models.registry import build_arch

    torch.manual_seed(0)
    net = build_arch("gfpgan_v1_clean").eval().requires_grad_(False)
    ac = arch_call("gfpgan_v1_clean")
    ours = count_gflop(lambda x: ac.fn(net, x, **ac.options), torch.zeros(1, 3, 512, 512))
    assert ours == pytest.approx(manifest("gfpgan_v1.4")["gflops"], rel=1e-4)


def test_ceiling_is_the_peak_over_what_the_loop_achieves():
    c = ceilings(400.0, 4.0, {"fp32": {"torch": 150.0, "openvino": 200.0}, "bf16": {"openvino": 500.0}})
    # the loop does 400 GFLOP in 4 s = 100 GFLOPS; the best fp32 backend reaches 200, bf16 500
    assert c["fp32"] == {"peak GFLOPS": 200.0, "min ms/face": 2000.0, "max speed-up": 2.0}
    assert c["bf16"] == {"peak GFLOPS": 500.0, "min ms/face": 800.0, "max speed-up": 5.0}


def test_bf16_has_no_peak_on_a_cpu_without_bf16_units():
    plain = CpuCaps(flags=("avx2", "avx512f"), cores=2)
    peak = dense_peak(["torch"], ["fp32", "bf16"], plain, runs=1)
    assert set(peak) == {"fp32"} and set(peak["fp32"]) == {"torch"} and peak["fp32"]["torch"] > 0

"""SGPN against the official golden, plus batching (its encoder runs the LQ and 3D faces as one batch)."""

from __future__ import annotations

import pytest
import torch

from tests.models.golden import assert_fixed_buffers_match, manifest, run_equivalence


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def test_sgpn_matches_official_golden(tmp_path):
    def call(net, g):
        assert str(g["call"]).startswith("out = net(im_LR=x, im_D3D=x_d3d, coeff_D3D=coeff)")
        out = net(
            im_LR=torch.from_numpy(g["input"]),
            im_D3D=torch.from_numpy(g["input_d3d"]),
            coeff_D3D=torch.from_numpy(g["input_coeff"]),
        )
        return {"output": out}

    errs = run_equivalence("sgpn", "sgpn", call, tmp_path)
    assert errs["output"] <= 1e-4


def test_blur_kernels_are_the_official_fixed_buffers():
    from facerest_cli.models.sgpn import sgpn

    assert_fixed_buffers_match(sgpn(), "sgpn")
    assert len(manifest("sgpn")["fixed_values"]) == 21


@pytest.fixture(scope="module")
def small_sgpn():
    """An 8x8 SGPN: same code paths (encoder batching, AFFB masks, upsampling), cheap to run."""
    from facerest_cli.models.sgpn import sgpn

    torch.manual_seed(0)
    net = sgpn(size=8)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            if bool((p == p.flatten()[0]).all()):  # constant init: biases, noise weights
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return net.eval()


def test_batch_of_two_equals_two_single_calls(small_sgpn):
    g = torch.Generator().manual_seed(1)
    lq = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    d3d = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    coeff = torch.randn(2, 257, generator=g)
    with torch.inference_mode():
        batch = small_sgpn(lq, d3d, coeff)
        singles = [small_sgpn(lq[i : i + 1], d3d[i : i + 1], coeff[i : i + 1]) for i in range(2)]
    assert _rel(batch[0], batch[1]) > 1e-2
    for i in range(2):
        assert _rel(batch[i], singles[i][0]) <= 1e-5


def test_the_3d_prior_changes_the_output(small_sgpn):
    g = torch.Generator().manual_seed(2)
    lq = torch.rand(1, 3, 8, 8, generator=g) * 2 - 1
    d3d = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    coeff = torch.randn(1, 257, generator=g)
    with torch.inference_mode():
        a = small_sgpn(lq, d3d[:1], coeff)
        b = small_sgpn(lq, d3d[1:], coeff)
        c = small_sgpn(lq, d3d[:1], coeff + 1.0)
    assert _rel(a, b) > 1e-3 and _rel(a, c) > 1e-3


def test_wrong_inputs_are_refused(small_sgpn):
    x = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match="coeff_D3D"):
        small_sgpn(x, x, torch.zeros(1, 256))
    with pytest.raises(ValueError, match=r"\(B, 3, 8, 8\)"):
        small_sgpn(x, torch.zeros(2, 3, 8, 8), torch.zeros(1, 257))


def test_bfloat16_autocast_channels_last_runs_and_stays_close(small_sgpn):
    g = torch.Generator().manual_seed(3)
    lq, d3d = (torch.rand(2, 3, 8, 8, generator=g) * 2 - 1 for _ in range(2))
    coeff = torch.randn(2, 257, generator=g)
    with torch.inference_mode():
        ref = small_sgpn(lq, d3d, coeff)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cl = torch.channels_last
            low = small_sgpn(lq.contiguous(memory_format=cl), d3d.contiguous(memory_format=cl), coeff)
    assert torch.isfinite(low).all()
    assert _rel(low.float(), ref) < 5e-2

"""GPEN-BFR-512 against the official golden, plus the properties the batched restore runtime relies on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.models.golden import assert_fixed_buffers_match, manifest, run_equivalence


def _randomised(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Make the constant-initialised parameters (biases, noise weights) non-trivial, so every path matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if bool((p == p.flatten()[0]).all()):  # constant init: biases, noise weights, modulation bias 1
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return net.eval()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def test_gpen_bfr_512_matches_official_golden(tmp_path):
    def call(net, g):
        assert str(g["call"]).startswith("out, _ = net(x)")
        out, _ = net(torch.from_numpy(g["input"]))
        return {"output": out}

    errs = run_equivalence("gpen_bfr_512", "gpen-bfr-512", call, tmp_path)
    assert errs["output"] <= 1e-4


def test_blur_kernels_are_the_official_fixed_buffers():
    from facerest_cli.models.gpen import gpen_bfr_512

    assert_fixed_buffers_match(gpen_bfr_512(), "gpen_bfr_512")
    assert len(manifest("gpen_bfr_512")["fixed_values"]) == 21


@pytest.fixture(scope="module")
def small_gpen():
    from facerest_cli.models.gpen import gpen_bfr_512

    torch.manual_seed(0)
    return _randomised(gpen_bfr_512(size=32, narrow=0.125))


def test_batch_of_two_equals_two_single_calls(small_gpen):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    with torch.inference_mode():
        batch, latent = small_gpen(x, return_latents=True)
        singles = [small_gpen(x[i : i + 1])[0] for i in range(2)]
    assert latent.shape == (2, small_gpen.generator.n_latent, 512)
    assert _rel(batch[0], batch[1]) > 1e-2  # the two faces really differ
    for i in range(2):
        assert _rel(batch[i], singles[i][0]) <= 1e-5


def test_bfloat16_autocast_channels_last_stays_close(small_gpen):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.inference_mode():
        ref, _ = small_gpen(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low, _ = small_gpen(x.contiguous(memory_format=torch.channels_last))
    assert torch.isfinite(low).all()
    assert _rel(low.float(), ref) < 5e-2


def test_wrong_input_shape_is_refused(small_gpen):
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        small_gpen(torch.zeros(1, 3, 64, 64))


def test_forward_does_not_modify_its_input(small_gpen):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    before = x.clone()
    with torch.inference_mode():
        small_gpen(x)
    assert np.array_equal(x.numpy(), before.numpy())


@pytest.mark.parametrize("up,down,pad", [(1, 1, (2, 1)), (2, 1, (2, 1)), (1, 2, (1, 1)), (2, 2, (-1, 2))])
def test_upfirdn2d_is_a_true_convolution_of_the_resampled_signal(up, down, pad):
    """Against a direct sum: zero-insert, pad (negative crops), convolve with the (asymmetric) kernel, decimate."""
    from facerest_cli.models.stylegan2_ops import upfirdn2d

    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
    k = torch.randn(3, 4, generator=g, dtype=torch.float64)  # asymmetric: catches a missing flip
    u = torch.zeros(2, 3, 5 * up, 6 * up, dtype=torch.float64)
    u[:, :, ::up, ::up] = x
    p0, p1 = pad
    full = torch.zeros(2, 3, u.shape[2] + p0 + p1, u.shape[3] + p0 + p1, dtype=torch.float64)
    src = u[:, :, max(-p0, 0) : u.shape[2] - max(-p1, 0), max(-p0, 0) : u.shape[3] - max(-p1, 0)]
    full[:, :, max(p0, 0) : max(p0, 0) + src.shape[2], max(p0, 0) : max(p0, 0) + src.shape[3]] = src
    kh, kw = k.shape
    oh, ow = (full.shape[2] - kh) // down + 1, (full.shape[3] - kw) // down + 1
    ref = torch.zeros(2, 3, oh, ow, dtype=torch.float64)
    for y in range(oh):
        for xx in range(ow):
            win = full[:, :, y * down : y * down + kh, xx * down : xx * down + kw]
            ref[:, :, y, xx] = (win * k.flip([0, 1])).sum(dim=(2, 3))
    out = upfirdn2d(x, k, up=up, down=down, pad=pad)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-12)

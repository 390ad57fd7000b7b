"""GFPGANv1Clean (gfpgan-1.4 / gfpgan-1.3): golden equivalence with the official clean arch, and the runtime
contract (deterministic default, batch-independent samples, float32 styles under half-precision autocast)."""

from __future__ import annotations

import pytest
import torch

from tests.models.golden import run_equivalence


def _call(net, g):
    assert str(g["call"]).startswith("out = net(x, return_rgb=False, randomize_noise=False)[0]")
    return {"output": net(torch.from_numpy(g["input"]), return_rgb=False, randomize_noise=False)[0]}


@pytest.mark.parametrize(
    ("manifest_name", "entry_name"), [("gfpgan_v1.4", "gfpgan-1.4"), ("gfpgan_v1.3", "gfpgan-1.3")]
)
def test_matches_official_golden(manifest_name, entry_name, tmp_path):
    errs = run_equivalence(manifest_name, entry_name, _call, tmp_path)
    assert set(errs) == {"output"}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.fixture(scope="module")
def small_net():
    """The same classes at 64x64 and narrow widths (CPU-cheap), with every parameter non-trivial.

    The official init leaves the noise strengths at 0 and the biases constant; random values make the noise and
    bias paths matter, so the tests below can fail.
    """
    from facerest_cli.models.gfpgan import gfpgan_v1_clean

    torch.manual_seed(0)
    net = gfpgan_v1_clean(out_size=64, narrow=0.125, channel_multiplier=1).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith(".weight") and p.ndim == 1:  # StyleConv noise strength
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return net


def _faces(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_default_is_deterministic_and_randomize_noise_is_not(small_net):
    x = _faces(1, 0)
    with torch.inference_mode():
        a, rgbs = small_net(x)
        b, _ = small_net(x)
        c, _ = small_net(x, randomize_noise=True)
    assert rgbs == []
    assert torch.equal(a, b)
    assert _rel(c, a) > 1e-3


def test_batch_of_two_equals_two_singles(small_net):
    x = _faces(2, 1)
    assert _rel(x[0], x[1]) > 0.5
    with torch.inference_mode():
        batch, batch_rgbs = small_net(x, return_rgb=True)
        singles = [small_net(x[i : i + 1], return_rgb=True) for i in range(2)]
    assert [tuple(r.shape) for r in batch_rgbs] == [(2, 3, s, s) for s in (8, 16, 32, 64)]
    for i, (single, single_rgbs) in enumerate(singles):
        assert _rel(batch[i : i + 1], single) <= 1e-5
        assert all(_rel(rb[i : i + 1], rs) <= 1e-5 for rb, rs in zip(batch_rgbs, single_rgbs))
    assert _rel(batch[0], batch[1]) > 1e-3  # the two faces give different outputs


def test_input_is_not_modified_and_bad_shape_is_refused(small_net):
    x = _faces(1, 2)
    before = x.clone()
    with torch.inference_mode():
        small_net(x)
    assert torch.equal(x, before)
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\).*got \(1, 3, 32, 32\)"):
        small_net(x[:, :, :32, :32])


def test_half_precision_autocast_survives_styles_beyond_float16_range(small_net):
    """float16 autocast with styles of 1e5: the official grouped form overflows twice here (the style itself,
    and sum((W*s)^2) for the demodulation), so this image is finite only if both are handled in float32."""
    import copy

    from facerest_cli.models.gfpgan import StyleConv

    net = copy.deepcopy(small_net)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, StyleConv):  # demodulated, so the float32 image itself stays O(1)
                m.modulated_conv.modulation.bias.fill_(1e5)
    x = _faces(2, 3)
    with torch.inference_mode():
        ref, _ = net(x)
        with torch.autocast("cpu", dtype=torch.float16):
            half, _ = net(x)
    assert half.dtype == torch.float16
    assert torch.isfinite(ref).all() and torch.isfinite(half).all()
    assert _rel(half, ref) <= 5e-3


def test_channels_last_module_keeps_layout_output_and_official_state_dict(small_net):
    import copy

    net = copy.deepcopy(small_net).to(memory_format=torch.channels_last)
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in small_net.state_dict().items()}
    assert net.state_dict()["stylegan_decoder.style_conv1.modulated_conv.weight"].ndim == 5
    x = _faces(2, 4)
    with torch.inference_mode():
        ref, _ = small_net(x)
        out, _ = net(x.contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)  # no silent fall-back to NCHW on the way
    assert _rel(out, ref) <= 1e-5


def test_half_module_matches_float32(small_net):
    import copy

    net = copy.deepcopy(small_net).half()
    x = _faces(2, 5)
    with torch.inference_mode():
        ref, _ = small_net(x)
        half, _ = net(x.half())
    assert half.dtype == torch.float16
    assert _rel(half, ref) <= 5e-3

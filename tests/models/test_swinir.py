"""DifFace's SwinIR first stage against the official golden; its architecture-built fixed buffers."""

from __future__ import annotations

import pytest
import torch

from tests.models.golden import (
    assert_close_to_golden,
    assert_state_dict_matches_manifest,
    check_rng_fingerprint,
    golden,
    manifest,
    write_official_checkpoint,
)


def test_fixed_buffers_are_built_by_the_architecture_and_equal_the_manifest():
    from facerest_cli.models.swinir import difface_swinir

    m = manifest("difface_swinir")
    net = difface_swinir()
    assert_state_dict_matches_manifest(net, "difface_swinir")
    sd = net.state_dict()
    assert list(sd) == [row[0] for row in m["tensors"]]  # the official order, buffers in their places
    fixed = [row[0] for row in m["tensors"] if len(row) > 4 and row[4].get("fixed")]
    assert sorted(fixed) == sorted(m["fixed_values"])
    assert sum(k.endswith("relative_position_index") for k in fixed) == 48
    assert sum(k.endswith("attn_mask") for k in fixed) == 24  # the shifted blocks only
    for key in fixed:
        want = torch.tensor(m["fixed_values"][key], dtype=torch.float64).reshape(sd[key].shape).to(sd[key].dtype)
        assert torch.equal(sd[key], want), key


def test_swinir_matches_the_official_golden_through_the_strict_loader(tmp_path):
    """The difface entry's second file names arch difface_swinir: load_model builds SwinIR for it."""
    from facerest_cli.weights.loader import load_model
    from facerest_cli.weights.registry import load_registry

    check_rng_fingerprint("difface_swinir")
    entry = load_registry().get("difface")
    spec = entry.file("swinir_restoration512_L1.pth")
    assert spec.arch == "difface_swinir"
    ckpt = write_official_checkpoint("difface_swinir", tmp_path / spec.name)
    net = load_model(entry, ckpt, spec)
    assert type(net).__name__ == "SwinIR" and not net.training
    g = golden("difface_swinir")
    assert str(g["call"]).startswith("out = net(x)")
    with torch.inference_mode():
        out = net(torch.from_numpy(g["input"]))
    errs = assert_close_to_golden({"output": out}, "difface_swinir")
    assert errs["output"] <= 1e-4  # measured 1.2e-6


def test_other_sizes_use_a_mask_computed_for_their_grid():
    """A 128x128 input (16x16 tokens) still works: the shifted blocks compute their mask for that grid."""
    from facerest_cli.models.swinir import SwinIR, shifted_window_mask

    torch.manual_seed(0)
    net = SwinIR(embed_dim=24, depths=(2,), num_heads=(2,)).eval()
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        both = net(x)
        one = net(x[1:])
    assert both.shape == (2, 3, 128, 128)
    assert torch.allclose(both[1], one[0], rtol=0, atol=1e-5)
    mask = shifted_window_mask(16, 16, 8, 4)
    assert mask.shape == (4, 64, 64) and set(mask.unique().tolist()) == {-100.0, 0.0}
    assert not mask[0].any()  # the top-left window holds one region only
    with pytest.raises(ValueError, match=r"multiples of 64"):
        net(torch.zeros(1, 3, 96, 96))

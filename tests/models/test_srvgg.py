"""SRVGGNetCompact (realesr-general-x4v3) against the official golden, and ``--denoise-strength`` deep network
interpolation with the wdn twin against ``output_dni`` (dn = 0.9: 0.9 * x4v3(seed 0) + 0.1 * wdn(seed 1))."""

from __future__ import annotations

import pytest
import torch

from tests.models.golden import check_rng_fingerprint, golden, rel_l2, run_equivalence, write_official_checkpoint


def test_general_x4v3_matches_official_golden(tmp_path):
    def call(net, g):
        assert str(g["call"]).startswith("out = net(x)")
        return {"output": net(torch.from_numpy(g["input"]))}

    errs = run_equivalence("realesr_general_x4v3", "realesr-general-x4v3", call, tmp_path)
    assert errs["output"] <= 1e-4


def test_denoise_strength_interpolates_weights_as_the_official_dni(tmp_path):
    from facerest_cli.upsample.models import build_upsampler_module
    from facerest_cli.weights.registry import load_registry

    check_rng_fingerprint("realesr_general_x4v3")
    reg = load_registry()
    a = write_official_checkpoint("realesr_general_x4v3", tmp_path / "realesr-general-x4v3.pth", seed=0)
    b = write_official_checkpoint("realesr_general_x4v3", tmp_path / "realesr-general-wdn-x4v3.pth", seed=1)
    g = golden("realesr_general_x4v3")
    assert "0.9*make_state_dict(m, 0) + 0.1*make_state_dict(m, 1)" in str(g["call"])
    x = torch.from_numpy(g["input"])
    net = build_upsampler_module(reg.get("realesr-general-x4v3"), a, denoise_strength=0.9,
                                 partner=reg.get("realesr-general-wdn-x4v3"), partner_path=b)
    with torch.inference_mode():
        out = net(x)
    assert rel_l2(out, g["output_dni"]) <= 1e-4
    # The order matters (0.1*a + 0.9*b is another net): a swapped interpolation would fail the line above.
    swapped = build_upsampler_module(reg.get("realesr-general-x4v3"), a, denoise_strength=0.1,
                                     partner=reg.get("realesr-general-wdn-x4v3"), partner_path=b)
    with torch.inference_mode():
        assert rel_l2(swapped(x), g["output_dni"]) > 0.1
        # dn = 1 is x4v3 alone: no wdn file needed, the plain golden output.
        alone = build_upsampler_module(reg.get("realesr-general-x4v3"), a, denoise_strength=1.0)
        assert rel_l2(alone(x), g["output"]) <= 1e-4


def test_denoise_strength_is_checked(tmp_path):
    from facerest_cli.errors import UsageError
    from facerest_cli.upsample.models import build_upsampler_module
    from facerest_cli.weights.registry import load_registry

    reg = load_registry()
    a = write_official_checkpoint("realesr_general_x4v3", tmp_path / "realesr-general-x4v3.pth", seed=0)
    with pytest.raises(UsageError, match=r"\[0, 1\]"):
        build_upsampler_module(reg.get("realesr-general-x4v3"), a, denoise_strength=1.5,
                               partner=reg.get("realesr-general-wdn-x4v3"), partner_path=a)
    with pytest.raises(UsageError, match="applies to"):
        build_upsampler_module(reg.get("realesr-general-x4v3"), a, denoise_strength=0.5)

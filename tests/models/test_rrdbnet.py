"""RRDBNet (Real-ESRGAN x4plus / x2plus) against the official goldens: strict load of make_checkpoint files in the
official layout (``params_ema``) through the real loader, then ``out = net(x)`` (RealESRGANer.process)."""

from __future__ import annotations

import pytest
import torch

from tests.models.golden import run_equivalence


def _call(net, g):
    assert str(g["call"]).startswith("out = net(x)")
    return {"output": net(torch.from_numpy(g["input"]))}


@pytest.mark.parametrize("manifest_name,entry", [("realesrgan_x4plus", "realesrgan-x4"),
                                                 ("realesrgan_x2plus", "realesrgan-x2")])
def test_rrdbnet_matches_official_golden(manifest_name, entry, tmp_path):
    errs = run_equivalence(manifest_name, entry, _call, tmp_path)
    assert errs["output"] <= 1e-4


def test_x2plus_needs_even_sides():
    from facerest_cli.models.rrdbnet import RRDBNet

    net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=2).eval()
    with torch.inference_mode():
        assert net(torch.rand(1, 3, 6, 8)).shape == (1, 3, 12, 16)
        with pytest.raises(ValueError, match="divisible by 2"):
            net(torch.rand(1, 3, 7, 8))

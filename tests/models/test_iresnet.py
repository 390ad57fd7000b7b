"""ArcFace iResNet-50/100: golden equivalence with the official arcface_torch backbones."""

from __future__ import annotations

import pytest
import torch

from tests.models.golden import run_equivalence


def _call(net, g):
    assert str(g["call"]).startswith("emb = net(x)")
    return {"embedding": net(torch.from_numpy(g["input"]))}


@pytest.mark.parametrize(
    ("manifest_name", "entry_name"),
    [
        ("arcface_iresnet50", "arcface-iresnet50"),
        pytest.param("arcface_iresnet100", "arcface-iresnet100", marks=pytest.mark.slow),
    ],
)
def test_matches_official_golden(manifest_name, entry_name, tmp_path):
    errs = run_equivalence(manifest_name, entry_name, _call, tmp_path)
    assert set(errs) == {"embedding"}


def test_fp16_flag_keeps_keys_and_cpu_result():
    from facerest_cli.models.iresnet import IResNet

    torch.manual_seed(0)
    ref = IResNet((1, 1, 1, 1)).eval()  # a 4-block iResNet: same code paths as r50/r100, a fraction of the cost
    amp = IResNet((1, 1, 1, 1), fp16=True).eval()
    amp.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 112, 112)
    with torch.inference_mode():
        # The official autocast is CUDA-only: on CPU fp16=True must compute the same float32 function.
        torch.testing.assert_close(amp(x), ref(x), rtol=0, atol=0)

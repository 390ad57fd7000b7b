"""``upsample.models``: an upsampler loads through the weights store (verified/pinned files), with
``--denoise-strength`` interpolation, and runs tiles on a device/precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.models.golden import golden, rel_l2, write_official_checkpoint


def test_load_upsampler_through_the_store_with_denoise_strength(tmp_path):
    """``facerest weights import`` the two general-v3 files (unpinned: pinned on import), then
    ``load_upsampler(..., denoise_strength=0.9)`` gives the official dni output."""
    from facerest_cli.upsample.models import load_upsampler, upsampler_names
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    src = tmp_path / "src"
    src.mkdir()
    write_official_checkpoint("realesr_general_x4v3", src / "realesr-general-x4v3.pth", seed=0)
    write_official_checkpoint("realesr_general_x4v3", src / "realesr-general-wdn-x4v3.pth", seed=1)
    store = WeightsStore(WeightsConfig(home=tmp_path / "home" / "weights", offline=True))
    assert {r.action for r in store.import_paths([src])} == {"installed"}
    assert upsampler_names(store.registry)[:3] == ["realesrgan-x2", "realesrgan-x4", "realesr-general-x4v3"]
    net = load_upsampler("realesr-general-x4v3", store, denoise_strength=0.9)
    assert (net.scale, net.align, net.info.denoise_strength) == (4, 1, 0.9)
    g = golden("realesr_general_x4v3")
    out = net.run(g["input"])
    assert out.dtype == np.float32 and rel_l2(out, g["output_dni"]) <= 1e-4
    # realesrgan-x2 is not installed and may not be fetched offline: a clear error, not a crash
    from facerest_cli.errors import WeightsError

    with pytest.raises(WeightsError):
        load_upsampler("realesrgan-x2", store)


def test_precisions():
    from facerest_cli.errors import UsageError
    from facerest_cli.models.srvgg import SRVGGNetCompact
    from facerest_cli.upsample.models import UpsamplerInfo, UpsamplerNet

    torch.manual_seed(0)
    module = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=2).eval()
    x = np.random.default_rng(0).random((2, 3, 12, 10), dtype=np.float32)
    ref = UpsamplerNet(module, UpsamplerInfo("t", 2, 1, None)).run(x)
    with torch.no_grad():
        assert np.allclose(ref, module(torch.from_numpy(x)).numpy(), atol=1e-6)
    import copy

    bf = UpsamplerNet(copy.deepcopy(module), UpsamplerInfo("t", 2, 1, None), precision="bf16")
    out = bf.run(x)
    assert out.dtype == np.float32 and out.shape == (2, 3, 24, 20)
    assert np.abs(out - ref).max() < 0.05  # bf16 keeps ~3 significant digits
    with pytest.raises(UsageError, match="needs a GPU"):
        UpsamplerNet(module, UpsamplerInfo("t", 2, 1, None), precision="fp16")

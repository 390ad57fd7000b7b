"""The exact-official mode (``upsample.official.enhance_official``) against RealESRGANer.enhance's golden
(goldens/realesrganer_x2plus_tiled.npz): every uint8 output within |diff| <= 1 on <= 0.1 % of the values, every
float output (before the clamp) within relative L2 1e-4, and the tile grid the golden records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import shared_file
from tests.models.golden import rel_l2
from tests.upsample.conftest import NearestNet, uint8_close

# golden key -> (input key, tile, tile_pad, pre_pad, outscale), as the manifest's enhance_golden.call states
CASES = {
    "output": ("input", 64, 10, 0, 2),
    "output_untiled": ("input", 0, 10, 0, 2),
    "output_prepad10": ("input", 64, 10, 10, 2),
    "output_untiled_prepad10": ("input", 0, 10, 10, 2),
    "output_tilepad4": ("input", 64, 4, 0, 2),
    "output_outscale3p5": ("input", 64, 10, 0, 3.5),
    "output_odd": ("input_odd", 64, 4, 0, 2),
}


def _enhance_golden() -> dict:
    return json.loads(shared_file("checkpoint-formats", "realesrgan_x2plus.json").read_text())["enhance_golden"]


def test_cases_are_the_goldens_documented_calls(tiled_golden):
    call = _enhance_golden()["call"]
    assert "output_tilepad4: TILE=64, TILE_PAD=4, PRE_PAD=0" in call and "OUTSCALE=3.5" in call
    assert set(str(tiled_golden["uint8_outputs"]).split(",")) == set(CASES)


@pytest.mark.parametrize("key", list(CASES))
def test_enhance_official_matches_every_uint8_golden(key, x2plus, tiled_golden):
    from facerest_cli.upsample.official import enhance_official

    inp, tile, pad, pre, outscale = CASES[key]
    out, mode = enhance_official(tiled_golden[inp], x2plus.forward, 2, tile=tile, tile_pad=pad, pre_pad=pre,
                                 outscale=outscale)
    assert mode == "RGB"
    max_abs, frac = uint8_close(out, tiled_golden[key])
    assert max_abs <= 1 and frac <= 1e-3, (key, max_abs, frac)


@pytest.mark.parametrize("key,tile,pad", [("output_float", 64, 10), ("output_untiled_float", 0, 10),
                                          ("output_tilepad4_float", 64, 4)])
def test_float_outputs_before_the_clamp(key, tile, pad, x2plus, tiled_golden):
    import cv2

    from facerest_cli.upsample.official import official_process

    rgb = cv2.cvtColor(tiled_golden["input"].astype(np.float32) / 255, cv2.COLOR_BGR2RGB)
    t = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).unsqueeze(0)
    out = official_process(t, x2plus.forward, 2, tile=tile, tile_pad=pad, pre_pad=0)
    # The stored arrays are clamped to [0, 1] although the manifest calls them "before the clamp": enhance()'s
    # ``output.data.squeeze().float().cpu().clamp_(0, 1)`` returns the same CPU storage, so the in-place clamp
    # rewrote ``up.output`` before it was saved. The network output itself does go below 0:
    assert float(out.min()) < 0 and float(tiled_golden[key].min()) == 0.0
    assert rel_l2(out.clamp(0, 1), tiled_golden[key]) <= 1e-4


class _Recorder:
    def __init__(self, net):
        self.net, self.shapes = net, []

    def __call__(self, t):
        self.shapes.append(tuple(t.shape[-2:]))
        return self.net(t)


@pytest.mark.parametrize("grid,inp,pad,pre", [("tile_grid_output", "input", 10, 0),
                                              ("tile_grid_output_prepad10", "input", 10, 10),
                                              ("tile_grid_output_tilepad4_and_output_odd", "input", 4, 0)])
def test_tile_grid_is_the_official_one(grid, inp, pad, pre, tiled_golden):
    """Row-major tiles, context clipped (not padded) at the border: the net sees exactly the golden's tile sizes."""
    from facerest_cli.upsample.official import enhance_official

    want = [tuple(t["net_input_hw"]) for t in _enhance_golden()[grid]["tiles"]]
    rec = _Recorder(NearestNet(2).forward)
    enhance_official(tiled_golden[inp], rec, 2, tile=64, tile_pad=pad, pre_pad=pre)
    assert rec.shapes == want


def test_16bit_gray_and_rgba_follow_the_official_rules():
    """max > 256 -> 16-bit; gray in, gray out; alpha through the net separately (or bilinear)."""
    from facerest_cli.upsample.official import enhance_official

    rng = np.random.default_rng(0)
    net = NearestNet(2)
    img16 = rng.integers(0, 65536, (10, 12, 4), dtype=np.uint16)
    out, mode = enhance_official(img16, net.forward, 2, tile=0, pre_pad=0)
    assert mode == "RGBA" and out.dtype == np.uint16 and out.shape == (20, 24, 4)
    assert np.array_equal(out, img16.repeat(2, 0).repeat(2, 1))  # nearest net: exact, alpha included
    calls = net.calls
    out_lin, _ = enhance_official(img16, net.forward, 2, tile=0, pre_pad=0, alpha_upsampler="linear")
    assert net.calls == calls + 1  # colour only; alpha resized bilinearly
    dark16 = (img16[:, :, 0] % 200).astype(np.uint16)  # a 16-bit image whose max <= 256 is treated as 8-bit
    out_dark, mode = enhance_official(dark16, net.forward, 2, tile=0, pre_pad=0)
    assert mode == "L" and out_dark.dtype == np.uint8 and out_dark.shape == (20, 24)
    gray = rng.integers(0, 256, (9, 7, 1), dtype=np.uint8)
    out_g, mode = enhance_official(gray, net.forward, 2, tile=4, tile_pad=2, pre_pad=0)
    assert mode == "L" and out_g.shape == (18, 14, 1) and np.array_equal(out_g[:, :, 0], gray[:, :, 0].repeat(2, 0).repeat(2, 1))

"""Our default tiler (``upsample.tiling``): smooth-window blending, batching, streaming bands, every pixel layout.

The accuracy facts use the x2plus stand-in on the golden image (goldens/realesrganer_x2plus_tiled.npz): the
official tiling at tile_pad 4 differs from the untiled output on 12.7 % of the uint8 values; ours must stay within
1 level on >= 99.9 %.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from tests.upsample.conftest import NearestNet, uint8_close


class Counting:
    """Forwards to a network and records the batch size of every call."""

    def __init__(self, net):
        self.net, self.scale, self.align = net, net.scale, net.align
        self.batches: list[int] = []

    def run(self, x):
        self.batches.append(len(x))
        return self.net.run(x)


@pytest.mark.parametrize("length,tile,pad,overlap,align,scale",
                         [(150, 64, 4, 16, 2, 2), (200, 64, 10, 16, 2, 2), (149, 64, 0, 16, 1, 4), (1000, 256, 10, 16, 1, 2),
                          (97, 32, 3, 40, 1, 2), (64, 64, 4, 16, 2, 2), (514, 100, 7, 0, 2, 2)])
def test_axis_plan_weights_sum_to_one_and_keep_tile_pad_context(length, tile, pad, overlap, align, scale):
    from facerest_cli.upsample.tiling import axis_plan

    plan = axis_plan(length, tile, pad, overlap, align, scale)
    total = np.zeros(length * scale)
    sizes = {t.end - t.start for t in plan}
    assert len(sizes) == 1, "every tile has the same input size (they are batched)"
    for t in plan:
        assert 0 <= t.start < t.end <= length and t.start % align == 0 and t.end % align == 0
        total[t.start * scale : t.end * scale] += t.weights
        nz = np.flatnonzero(t.weights > 0)
        # at least tile_pad input pixels of real context before the first / after the last weighted output pixel
        if t.start > 0:
            assert nz[0] >= pad * scale, (t.start, nz[0])
        if t.end < length:
            assert len(t.weights) - 1 - nz[-1] >= pad * scale
        if overlap > 0 and len(plan) > 1:
            # a smooth hand-over: no weight jumps by more than the ramp's steepest slope allows
            ov = min(overlap, length // len(plan))  # the blend band never exceeds the smallest core
            assert np.abs(np.diff(t.weights)).max() <= math.pi / 2 / (ov * scale) + 1e-6
    assert np.allclose(total, 1.0, atol=1e-6)
    assert len(plan) == (1 if tile >= length else math.ceil(length / tile))


def test_blended_tiling_at_tile_pad_4_is_within_one_level_of_untiled(x2plus, tiled_golden):
    from facerest_cli.upsample.tiling import TileConfig, upscale_image

    untiled = tiled_golden["output_untiled"]
    # The official tiling's seams at tile_pad 4 (a fact of the golden): 12.7 % of the values differ.
    _, frac_official = uint8_close(tiled_golden["output_tilepad4"], untiled)
    assert frac_official > 0.12
    net = Counting(x2plus)
    out = upscale_image(tiled_golden["input"], net, TileConfig(tile=64, tile_pad=4, overlap=16, batch_size=4))
    d = np.abs(out.astype(np.int32) - untiled)
    within = float((d <= 1).mean())
    print(f"blended tile_pad 4: {within:.5%} within 1 level, {float((d > 0).mean()):.3%} differ, max {d.max()}")
    assert within >= 0.999
    # 3 rows x 4 columns of tiles, 4 tiles per network call
    assert net.batches == [4, 4, 4]


def test_untiled_mode_equals_the_official_untiled_output(x2plus, tiled_golden):
    from facerest_cli.upsample.tiling import TileConfig, upscale_image

    out = upscale_image(tiled_golden["input"], x2plus, TileConfig(tile=0))
    max_abs, frac = uint8_close(out, tiled_golden["output_untiled"])
    assert max_abs <= 1 and frac <= 1e-3


def _tile_mean_net(strength: float):
    """Nearest upscaling plus an offset that depends on the whole tile (its mean): a network whose receptive field
    is the tile, the worst case for seams."""
    return NearestNet(2, fn=lambda y: y + strength * (y.mean(axis=(1, 2, 3), keepdims=True) - 0.5))


@pytest.mark.parametrize("tile_pad", [0, 4])
def test_no_seam_at_any_tile_pad(tile_pad):
    """Official tiling: the offset changes in one step at the core edge. Blended: it ramps over the overlap, so the
    largest jump between neighbouring pixels is bounded by the offset difference times the ramp's slope."""
    from facerest_cli.upsample.official import enhance_official
    from facerest_cli.upsample.tiling import TileConfig, upscale_image

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:128, 0:192]
    img = np.clip(40 + 150 * (xx / 192) + 30 * (yy / 128) + rng.normal(0, 1, (128, 192)), 0, 255).astype(np.uint8)
    img = np.repeat(img[:, :, None], 3, axis=2)
    ref = img.repeat(2, 0).repeat(2, 1).astype(np.float64)
    official, _ = enhance_official(img, _tile_mean_net(0.4).forward, 2, tile=64, tile_pad=tile_pad, pre_pad=0)
    ours = upscale_image(img, _tile_mean_net(0.4), TileConfig(tile=64, tile_pad=tile_pad, overlap=16))

    def max_jump(out):
        e = out.astype(np.float64) - ref  # the tiling error field (the net's offset)
        return max(np.abs(np.diff(e, axis=0)).max(), np.abs(np.diff(e, axis=1)).max())

    # neighbouring tiles' means differ by ~50 levels along x, so their offsets by ~0.4 * 50 = 20 levels: the
    # official tiling steps by that at a core edge; the blend spreads it over 32 output pixels (<= 20 * pi/64 + 1).
    j_off, j_ours = max_jump(official), max_jump(ours)
    print(f"tile_pad {tile_pad}: largest step of the error field: official {j_off:.0f}, blended {j_ours:.0f} levels")
    assert j_off >= 15
    assert j_ours <= 4


@pytest.mark.parametrize("shape,dtype", [((37, 53), np.uint8), ((37, 53, 1), np.uint8), ((37, 53, 2), np.uint16),
                                         ((37, 53, 3), np.uint16), ((37, 53, 4), np.uint8), ((36, 20, 4), np.uint16)])
def test_every_layout_keeps_depth_channels_and_values(shape, dtype):
    """Nearest-neighbour net: the tiled, blended, streamed result must be the exact pixel repeat, whatever the
    layout; odd sizes with align 2 exercise the virtual mod pad; 16-bit keeps its low byte."""
    from facerest_cli.upsample.tiling import TileConfig, upscale_bands, upscale_image

    rng = np.random.default_rng(2)
    img = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    net = NearestNet(2, align=2)
    cfg = TileConfig(tile=16, tile_pad=3, overlap=6, batch_size=5)
    out = upscale_image(img, net, cfg)
    assert out.dtype == img.dtype and out.shape == (shape[0] * 2, shape[1] * 2, *shape[2:])
    assert np.array_equal(out, img.repeat(2, 0).repeat(2, 1))
    # alpha goes through the network as its own plane: twice the tiles of a colour-only image. Tiles are batched
    # within a row of tiles (the unit of streaming).
    planes = 2 if len(shape) == 3 and shape[2] in (2, 4) else 1
    rows, cols = (math.ceil(38 / 16), math.ceil(54 / 16)) if shape[0] == 37 else (math.ceil(36 / 16), math.ceil(20 / 16))
    assert net.calls == rows * math.ceil(cols * planes / 5) and net.max_batch == min(5, cols * planes)
    bands = list(upscale_bands(img, NearestNet(2, align=2), cfg))
    assert [b.y for b in bands] == list(itertools.accumulate([0] + [len(b.pixels) for b in bands[:-1]]))
    assert max(len(b.pixels) for b in bands) <= 2 * (16 + 6 + 2 * 3 + 2)


def test_gray_network_output_becomes_luma():
    """A network that colours a gray image: the output stays gray, as 0.299 R + 0.587 G + 0.114 B (as the
    official 'L' mode), in the input's layout."""
    from facerest_cli.upsample.official import enhance_official
    from facerest_cli.upsample.tiling import TileConfig, upscale_image

    def tint(y):
        y = y.copy()
        y[:, 0] *= 0.5  # R
        return y

    img = np.random.default_rng(3).integers(0, 256, (20, 24), dtype=np.uint8)
    ours = upscale_image(img, NearestNet(2, fn=tint), TileConfig(tile=0))
    official, mode = enhance_official(img, NearestNet(2, fn=tint).forward, 2, tile=0, pre_pad=0)
    assert mode == "L" and ours.shape == official.shape == (40, 48)
    assert np.abs(ours.astype(int) - official).max() <= 1
    expected = np.rint(img.astype(np.float32) / 255 * np.float32(1 - 0.5 * 0.299) * 255)
    assert np.abs(ours.astype(int) - expected.repeat(2, 0).repeat(2, 1)).max() <= 1


def test_a_gray_photo_stored_as_bgr_stays_gray_and_colour_stays_colour():
    from facerest_cli.upsample.tiling import TileConfig, upscale_image

    def tint(y):
        y = y.copy()
        y[:, 0] *= 0.5  # the network reddens / blues: it would colour a gray photo
        return y

    rng = np.random.default_rng(6)
    g = rng.integers(0, 256, (20, 24, 1), dtype=np.uint8)
    bgra = np.concatenate([g, g, g, rng.integers(0, 256, (20, 24, 1), dtype=np.uint8)], axis=2)
    out = upscale_image(bgra, NearestNet(2, fn=tint), TileConfig(tile=8, tile_pad=2, overlap=4))
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 1], out[:, :, 2])
    # alpha went through the (tinting) network as its own gray plane and came back as its luma
    alpha = np.rint(bgra[:, :, 3].astype(np.float32) * np.float32(1 - 0.5 * 0.299)).repeat(2, 0).repeat(2, 1)
    assert np.abs(out[:, :, 3].astype(int) - alpha).max() <= 1
    colour = bgra[:, :, :3].copy()
    colour[0, 0, 0] ^= 1
    out_c = upscale_image(colour, NearestNet(2, fn=tint), TileConfig(tile=0))
    assert not np.array_equal(out_c[:, :, 0], out_c[:, :, 2])


def test_batch_is_capped_by_call_pixels():
    from facerest_cli.upsample.tiling import TileConfig, upscale_image

    net = NearestNet(2)
    img = np.zeros((100, 100, 3), np.uint8)
    # each tile is 40+8+2*4 = 56 px per side -> 112^2 output pixels; the cap allows 2 per call
    upscale_image(img, net, TileConfig(tile=40, tile_pad=4, overlap=8, batch_size=8, max_call_pixels=2 * 112 * 112))
    assert net.max_batch == 2 and net.calls == 3 * math.ceil(3 / 2)

"""The detection pyramid: every face size seen mid-range by some level, tiles that hold every kept face whole,
and full resolution skipped where an image has no detail there (issue 12, item 1)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from facerest_cli.detect.base import RawSpec
from facerest_cli.detect.scales import MAX_STEP, detail_scale, plan_passes
from tests.conftest import shared_file

YUNET_LIKE = RawSpec(face_min=16, face_max=300, tile=2048)
FIXED_640 = RawSpec(face_min=12, face_max=360, fixed_input=(640, 640), tile=640)


def test_small_image_is_one_pass():
    (p,) = plan_passes(280, 250, YUNET_LIKE)
    assert p.scale == 1.0 and p.tiles == ((0, 0, 250, 280),) and p.accept == (0.0, math.inf)


def test_ffhq_sized_photo_gets_a_coarse_and_a_full_resolution_pass():
    coarse, fine = plan_passes(1024, 1024, YUNET_LIKE)
    assert coarse.size == (300, 300) and fine.scale == 1.0 and len(fine.tiles) == 1
    assert coarse.accept[1] == math.inf and fine.accept[0] == 0.0
    # the full-resolution pass keeps only faces the coarse pass cannot see well (with a 3x overlap of sizes)
    assert fine.accept[1] == pytest.approx(3 * 16 / (300 / 1024))


@pytest.mark.parametrize("spec", [YUNET_LIKE, FIXED_640], ids=["dynamic", "fixed640"])
@pytest.mark.parametrize("hw", [(4076, 5888), (568, 1328), (3000, 700)])
def test_every_face_size_is_covered_and_tiles_hold_kept_faces(spec, hw):
    h, w = hw
    passes = plan_passes(h, w, spec)
    assert passes[-1].scale == 1.0
    for a, b in zip(passes, passes[1:]):
        assert b.scale / a.scale <= MAX_STEP * (1 + 1e-9)
    for size in np.geomspace(16, max(h, w), 60):
        ok = [p for p in passes if p.accept[0] <= size <= p.accept[1] and spec.face_min <= size * p.scale * 1.0001
              and size * p.scale <= spec.face_max * 1.0001]
        assert ok, f"face size {size:.0f} px has no pass that keeps it mid-range"
    for p in passes:
        sw, sh = p.size
        cover = np.zeros((sh, sw), bool)
        for x0, y0, x1, y1 in p.tiles:
            cover[y0:y1, x0:x1] = True
            if spec.fixed_input:
                assert x1 - x0 <= spec.fixed_input[0] and y1 - y0 <= spec.fixed_input[1]
        assert cover.all()
        if len(p.tiles) > 1:
            # neighbouring tiles overlap by more than the largest face this pass keeps
            xs = sorted({t[0] for t in p.tiles})
            ends = sorted({t[2] for t in p.tiles})
            overlap = min(e - s for s, e in zip(xs[1:], ends[:-1])) if len(xs) > 1 else math.inf
            assert overlap >= min(p.accept[1], max(h, w)) * p.scale


def test_det_size_caps_the_finest_pass():
    passes = plan_passes(4000, 6000, YUNET_LIKE, max_side=2048)
    assert max(passes[-1].size) == 2048 and passes[0].size[0] == 300


def test_detail_scale_finds_upscaled_photos():
    img = cv2.imread(str(shared_file("images", "insightface", "t1.jpg")))
    big = cv2.resize(img, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)  # 4.5 MP, no detail at full res
    assert detail_scale(big) == 0.5
    assert detail_scale(cv2.resize(img, None, fx=4.0, fy=4.0, interpolation=cv2.INTER_CUBIC)) == 0.25
    # a sharp photo keeps full resolution: tile it 2x2 (a 4.5 MP image with detail down to the pixel)
    assert detail_scale(np.tile(img, (2, 2, 1))) == 1.0
    assert detail_scale(img) == 1.0  # under 4 MP: full resolution is cheap, not measured

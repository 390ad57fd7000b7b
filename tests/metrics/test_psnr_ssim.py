"""PSNR / SSIM against BasicSR's own values on real image pairs (goldens/basicsr_psnr_ssim.npz, rel 1e-6)."""

from __future__ import annotations

import numpy as np

from facerest_cli.metrics.psnr_ssim import psnr, ssim, to_y_channel
from tests.conftest import shared_file


def _golden():
    return np.load(shared_file("checkpoint-formats", "goldens", "basicsr_psnr_ssim.npz"))


def test_every_value_matches_basicsr():
    g = _golden()
    worst = 0.0
    for i in range(len(g["ref"])):
        for ci, c in enumerate(g["crop_border"]):
            for yi, y in enumerate(g["test_y_channel"]):
                for fn, key in ((psnr, "psnr"), (ssim, "ssim")):
                    mine = fn(g["deg"][i], g["ref"][i], crop_border=int(c), y_channel=bool(y))
                    ref = float(g[key][i, ci, yi])
                    rel = abs(mine / ref - 1)
                    assert rel <= 1e-6, f"{key}[{i}, crop {c}, y {y}]: {mine} vs BasicSR {ref}"
                    # The README states the swap symmetry of the official functions: same values both ways.
                    assert fn(g["ref"][i], g["deg"][i], crop_border=int(c), y_channel=bool(y)) == mine
                    worst = max(worst, rel)
    assert worst <= 1e-6


def test_y_channel_is_bt601_studio_range_not_opencv_ycrcb():
    import cv2

    g = _golden()
    y = to_y_channel(g["ref"][0])
    assert y.dtype == np.float32 and y.shape == (512, 512, 1)
    assert np.array_equal(y, g["y_ref0"]) and np.array_equal(to_y_channel(g["deg"][0]), g["y_deg0"])
    assert 16 <= y.min() and y.max() <= 235
    full_range = cv2.cvtColor(g["ref"][0], cv2.COLOR_BGR2YCrCb)[..., 0].astype(np.float64)
    assert np.abs(full_range - y[..., 0]).mean() > 5  # a different definition, as the README warns


def test_rgb_psnr_equals_opencv_psnr_and_identical_images_are_infinite():
    import cv2

    g = _golden()
    for i in range(3):
        assert abs(psnr(g["deg"][i], g["ref"][i]) - cv2.PSNR(g["deg"][i], g["ref"][i])) < 1e-9
    assert psnr(g["ref"][0], g["ref"][0]) == float("inf")
    assert ssim(g["ref"][0], g["ref"][0]) == 1.0

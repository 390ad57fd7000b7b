"""Peak memory of the streaming upscale is bounded by the tile size, not the image (Real-ESRGAN #184: the official
``RealESRGANer`` holds the whole image as float32 NCHW, input and output).

Each run happens in a fresh interpreter (``tests/upsample/_rss_probe.py``) that reports its kernel-tracked peak RSS
(``ru_maxrss``) and a psutil sample.

Acceptance 5 asks for a 100-megapixel scan through realesrgan-x2 at tile 256. The full RRDBNet x2 costs
8.97 MFLOP per input pixel (36.7 GFLOP per 64x64, manifest), i.e. ~0.9 PFLOP for 100 MP (1.2 PFLOP with the
tiles' overlap): at the ~110 GFLOP/s one CPU core reaches (manifest timing) that is about 2.3-3 hours of CPU, so CI
cannot run it. The slow test below therefore runs the real tiling / streaming / TIFF-writing code on a 100 MP
generated scan with a *cheap network of the same interface* (nearest-neighbour x2 in an ``UpsamplerNet``, so
every tile is a real torch call); memory held per tile by the real network is checked separately on a small image.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.models.golden import write_official_checkpoint

GiB = 2**30
MiB = 2**20


def _probe(*args: str, timeout: float) -> dict:
    proc = subprocess.run([sys.executable, "-m", "tests.upsample._rss_probe", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_100_megapixel_scan_streams_under_3_gb(tmp_path):
    import tifffile

    out = tmp_path / "scan_x2.tif"
    r = _probe("cheap", out, 10000, 10000, 256, timeout=3600)
    print(f"100 MP x2, tile 256: peak RSS {r['peak_rss_hwm'] / GiB:.2f} GiB (input image {r['input_bytes'] / MiB:.0f} MiB,"
          f" {r['rss_ready'] / MiB:.0f} MiB before upscaling), {r['net_calls']} network calls,"
          f" {r['upscale_write_s']:.0f} s upscale + write")
    assert r["strips_ok"], "decoded strips differ from the expected output"
    with tifffile.TiffFile(out) as tf:
        assert tf.pages[0].shape == (20000, 20000, 3) and tf.pages[0].dtype.name == "uint8"
    assert r["peak_rss_hwm"] < 3 * GiB
    # what the upscale added on top of the loaded input: bounded by the tile rows, far below the 1.2 GB output
    assert r["peak_rss_hwm"] - r["rss_ready"] < 1 * GiB


def test_real_rrdbnet_streams_with_tile_bounded_memory(tmp_path):
    """The real RRDBNet x2 (make_checkpoint weights) through the tiler into a streamed PNG: what the upscale adds
    to the process is the network's activations for one call of 2 tiles of 48 px plus the band buffers and
    oneDNN's reordered weight copies (67 MB); measured +12 to +195 MiB depending on what the allocator kept from
    loading. The scaling with the image size is what the 100 MP test above checks."""
    import cv2

    ckpt = write_official_checkpoint("realesrgan_x2plus", tmp_path / "RealESRGAN_x2plus.pth")
    out = tmp_path / "small_x2.png"
    r = _probe("real", out, 64, 256, 32, ckpt, timeout=1800)
    added = r["peak_rss_hwm"] - r["rss_ready"]
    print(f"RRDBNet x2 64x256, tile 32 (48 px windows, 2 per call): +{added / MiB:.0f} MiB over "
          f"{r['rss_ready'] / MiB:.0f} MiB, {r['net_calls']} calls, {r['upscale_write_s']:.1f} s")
    img = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert img.shape == (128, 512, 3) and img.std() > 1  # a real picture came out, not a constant
    assert r["net_calls"] == 2 * 4  # 2 rows of 8 tiles, 2 tiles per call
    assert added < 400 * MiB

"""Run by test_memory.py in a fresh interpreter (the test session's own RSS would swamp the measurement):
upscale a generated image through the streaming tiler into a file, and report the process's peak RSS.

    python -m tests.upsample._rss_probe cheap OUT.tif HEIGHT WIDTH TILE     # cheap network, 100 MP scale
    python -m tests.upsample._rss_probe real OUT.png HEIGHT WIDTH TILE CKPT # RRDBNet x2 (make_checkpoint weights)

Peak RSS is the kernel's high-water mark of this process's memory map (``VmHWM``), plus a psutil sample every 20 ms for comparison.
Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import zlib

from facerest_cli.backend.memory import peak_rss_bytes


def _scan(h: int, w: int):
    """A generated 8-bit BGR scan, built a band at a time (no temporary bigger than a band)."""
    import numpy as np

    img = np.empty((h, w, 3), np.uint8)
    x = np.arange(w, dtype=np.int64)
    for y0 in range(0, h, 256):
        y = np.arange(y0, min(h, y0 + 256), dtype=np.int64)[:, None]
        for c in range(3):
            img[y0 : y0 + len(y), :, c] = (x[None, :] * 7 + y * 13 + c * 50 + (x[None, :] * y // 977) % 5) % 256
    return img


def _check_tiff_strips(path: str, img, scale: int, n: int = 4) -> bool:
    """Decode a few strips straight from the file (first, last, some in between) and compare them with the
    expected nearest-neighbour output, without ever reading the whole image."""
    import numpy as np
    import tifffile

    with tifffile.TiffFile(path) as tf, open(path, "rb") as fh:
        page = tf.pages[0]
        rps, offsets, counts = page.rowsperstrip, page.dataoffsets, page.databytecounts
        w_out = page.imagewidth
        picks = sorted({0, len(offsets) - 1, *np.linspace(0, len(offsets) - 1, n).astype(int).tolist()})
        for i in picks:
            fh.seek(offsets[i])
            raw = np.frombuffer(zlib.decompress(fh.read(counts[i])), np.uint8).reshape(-1, w_out, 3)
            strip = np.cumsum(raw, axis=1, dtype=np.uint8)  # undo predictor 2 (mod 256)
            y0 = i * rps
            rows = np.arange(y0, y0 + len(strip)) // scale
            expect = img[rows][:, :, ::-1].repeat(scale, axis=1)  # file order is RGB
            if not np.array_equal(strip, expect):
                return False
    return True


def main(mode: str, out: str, h: int, w: int, tile: int, ckpt: str | None = None) -> None:
    import numpy as np
    import psutil
    import torch

    from facerest_cli.upsample.models import UpsamplerInfo, UpsamplerNet
    from facerest_cli.upsample.stream import write_png_stream, write_tiff_stream
    from facerest_cli.upsample.tiling import TileConfig, upscale_bands

    torch.set_num_threads(2)
    proc = psutil.Process()
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.02)

    t0 = time.perf_counter()
    if mode == "cheap":
        class Cheap(torch.nn.Module):
            """Same interface as the upsamplers ((N, 3, h, w) -> (N, 3, 2h, 2w)); nearest neighbour: no FLOPs."""

            def forward(self, x):
                return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

        net = UpsamplerNet(Cheap(), UpsamplerInfo("cheap", 2, 2, None))
        cfg = TileConfig(tile=tile)  # default tile_pad, overlap, batch_size
    else:
        from facerest_cli.upsample.models import build_upsampler_module
        from facerest_cli.weights.registry import load_registry

        module = build_upsampler_module(load_registry().get("realesrgan-x2"), ckpt)
        net = UpsamplerNet(module, UpsamplerInfo("realesrgan-x2", 2, 2, None))
        cfg = TileConfig(tile=tile, tile_pad=4, overlap=8, batch_size=2)
    img = _scan(h, w)
    rss_ready = proc.memory_info().rss  # input image and network in memory, nothing upscaled yet
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t1 = time.perf_counter()
    shape = (2 * h, 2 * w, 3)
    bands = upscale_bands(img, net, cfg)
    if out.endswith(".tif"):
        write_tiff_stream(out, bands, shape, np.uint8, level=1)
    else:
        write_png_stream(out, bands, shape, np.uint8, level=1)
    t2 = time.perf_counter()
    stop.set()
    sampler.join()
    ok = _check_tiff_strips(out, img, 2) if mode == "cheap" else None
    print(json.dumps({
        "mode": mode, "megapixels_in": h * w / 1e6, "tile": tile, "input_bytes": img.nbytes,
        "rss_ready": rss_ready, "peak_rss_hwm": peak_rss_bytes(),
        "peak_rss_sampled": peak[0], "setup_s": t1 - t0, "upscale_write_s": t2 - t1, "net_calls": net.calls,
        "strips_ok": ok,
    }))


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], int(a[2]), int(a[3]), int(a[4]), a[5] if len(a) > 5 else None)

"""``facerest bench --bg-upsampler NAME``: upsampler throughput (megapixels/s) and peak RSS per device/precision.

Each configuration runs in a fresh interpreter (``python -m facerest_cli.upsample.bench CHILD_JSON``), so its peak
RSS (the kernel's high-water mark) belongs to that run alone. The image is a generated scan of ``size`` pixels
upscaled through the streaming tiler into a consumer that drops the bands (encoding is not measured), with the
network's real weights when they are installed, else the architecture with random weights (speed does not depend
on the values).

``scan=(H, W)`` adds one row for a large scan (e.g. 10000x10000, 100 MP): the same streaming tiler with a
nearest-neighbour stand-in of the network's scale, so the row's peak RSS shows what the photo's size costs (the
input image, the tiler's rows and bands) in minutes instead of CPU-hours; the real network adds its per-call
activations on top, which the rows above measure (they do not grow with the photo).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Sequence

CONFIG_HELP = "device:precision, e.g. cpu:fp32, cpu:bf16, cuda:fp16"


def _parse_size(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def bench_upsampler(name: str, configs: Sequence[str] = ("cpu:fp32",), size: int | tuple[int, int] = 512, *,
                    tile: int = 256, tile_pad: int = 10, overlap: int = 16, batch_size: int = 4,
                    denoise_strength: float = 0.5, random_weights: bool = False, threads: int | None = None,
                    scan: int | tuple[int, int] | None = None, timeout: float = 3600) -> dict:
    """Benchmark upsampler ``name`` on a ``size`` image (H, W or one side) for each ``device:precision`` config.

    Returns ``{"bench": "upsampler", ..., "rows": [...]}`` with, per config: seconds, input and output megapixels/s,
    network calls, peak RSS (MiB) and whether real weights were used; a config that cannot run (e.g. fp16 on CPU,
    CUDA absent) gets its error in the row instead.
    """
    h, w = _parse_size(size)
    rows = []
    runs = [(cfg, h, w, False) for cfg in configs]
    if scan is not None:
        runs.append(("cpu:fp32", *_parse_size(scan), True))
    for cfg, h, w, stand_in in runs:
        device, _, precision = cfg.partition(":")
        child = {"name": name, "device": device, "precision": precision or "fp32", "h": h, "w": w, "tile": tile,
                 "tile_pad": tile_pad, "overlap": overlap, "batch_size": batch_size,
                 "denoise_strength": denoise_strength, "random_weights": random_weights, "threads": threads,
                 "stand_in": stand_in}
        if stand_in:
            cfg = f"scan {w}x{h}, stand-in net"
        proc = subprocess.run([sys.executable, "-m", "facerest_cli.upsample.bench", json.dumps(child)],
                              capture_output=True, text=True, timeout=timeout)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode == 0 and lines:
            rows.append({**json.loads(lines[-1]), **({"config": cfg} if stand_in else {})})
        else:
            err = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            rows.append({"config": cfg, "error": err})
    h, w = _parse_size(size)
    return {"bench": "upsampler", "upsampler": name, "size": f"{w}x{h}", "megapixels": round(h * w / 1e6, 4),
            "tile": tile, "tile_pad": tile_pad, "overlap": overlap, "batch_size": batch_size, "rows": rows}


def _sig(v: float, digits: int = 4) -> float:
    return float(f"{v:.{digits}g}")


def _child(spec: dict) -> dict:
    import time

    import numpy as np
    import torch

    from facerest_cli.backend.memory import peak_rss_bytes

    from facerest_cli.models.registry import build_arch
    from facerest_cli.upsample.models import UpsamplerInfo, UpsamplerNet, load_upsampler, network_scale
    from facerest_cli.upsample.tiling import TileConfig, upscale_bands
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))  # a fresh benchmark process: its own setting
    name, device, precision = spec["name"], spec["device"], spec["precision"]
    store = WeightsStore(WeightsConfig.from_env())
    entry = store.registry.get(name)
    scale, align = network_scale(entry)
    real = not spec["random_weights"] and not spec.get("stand_in") and store.locate(name) is not None
    if spec.get("stand_in"):
        net = UpsamplerNet(_NearestStandIn(scale), UpsamplerInfo(name, scale, align, None), device, precision)
    elif real:
        net = load_upsampler(name, store, denoise_strength=spec["denoise_strength"], device=device, precision=precision)
    else:
        torch.manual_seed(0)
        net = UpsamplerNet(build_arch(entry.arch).eval(), UpsamplerInfo(name, scale, align, None), device, precision)
    h, w = spec["h"], spec["w"]
    img = np.empty((h, w, 3), np.uint8)  # generated a band of rows at a time: no temporary larger than a band
    xx = np.arange(w, dtype=np.int64)[None, :]
    for y0 in range(0, h, 256):
        yy = np.arange(y0, min(h, y0 + 256), dtype=np.int64)[:, None]
        img[y0 : y0 + len(yy)] = np.stack([(xx * 7 + yy * 3) % 256, (xx * yy // 97) % 256, (xx + 2 * yy) % 256], axis=2)
    cfg = TileConfig(tile=spec["tile"], tile_pad=spec["tile_pad"], overlap=spec["overlap"], batch_size=spec["batch_size"])
    # warm-up on one tile's worth (allocator, kernels), not timed
    warm = img[: min(h, cfg.tile or h), : min(w, cfg.tile or w)]
    for _ in upscale_bands(warm, net, cfg):
        pass
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    calls0 = net.calls
    t = time.perf_counter()
    rows = 0
    for band in upscale_bands(img, net, cfg):
        rows += len(band.pixels)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    sec = time.perf_counter() - t
    assert rows == h * scale
    return {"config": f"{device}:{precision}", "device": device, "precision": precision, "seconds": round(sec, 3),
            "input MP/s": _sig(h * w / 1e6 / sec), "output MP/s": _sig(h * w * scale * scale / 1e6 / sec),
            "net calls": net.calls - calls0, "peak RSS MiB": round(peak_rss_bytes() / 2**20),
            "threads": torch.get_num_threads(),
            "weights": "stand-in" if spec.get("stand_in") else "real" if real else "random"}


def _NearestStandIn(scale: int):
    """A network with the upsampler interface and no FLOPs: nearest-neighbour upscaling by ``scale``."""
    import torch

    class NearestStandIn(torch.nn.Module):
        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            return torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")

    return NearestStandIn()


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))

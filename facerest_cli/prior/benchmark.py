"""``facerest bench --stage prior``: the renderer (a batch of dense meshes) and the 3DDFA regressor."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    import torch

    from facerest_cli.weights.cache import WeightsConfig

RENDER_BATCH = 32
RENDER_SIZE = 512


def posed_mean_faces(u: np.ndarray, n: int, size: int) -> np.ndarray:
    """``n`` copies of a mesh (V, 3; y up, z to the viewer) turned from -60 to +60 degrees of yaw, with a little
    pitch, scaled like the render goldens (the face covers ~45 % of a ``size`` crop): screen vertices (n, V, 3) with depth (smaller nearer)."""
    c = u - u.mean(0)
    extent = np.abs(c[:, :2]).max()
    out = []
    for i in range(n):
        yaw = math.radians(-60 + 120 * i / max(n - 1, 1))
        pitch = math.radians(10 * math.sin(i))
        ry = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
        rx = np.array([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]])
        v = c @ (rx @ ry).T * (0.43 * size / extent)
        out.append(np.stack([v[:, 0] + size / 2, size / 2 - v[:, 1], v[:, 2].max() - v[:, 2] + 1.0], 1))
    return np.stack(out)


def bench_prior(weights: "WeightsConfig", *, batches: list[int], device: str, iters: int,
                timed: Callable[..., float]) -> dict:
    import torch

    from facerest_cli.prior.morphable import DenseBfm
    from facerest_cli.prior.render import Cameras, Meshes, get_renderer, pytorch3d_available
    from facerest_cli.prior.stage import choose_regressor
    from facerest_cli.prior.tddfa import Tddfa
    from facerest_cli.restore.runtime import resolve_device
    from facerest_cli.weights.cache import WeightsStore

    dev = resolve_device(device)
    store = WeightsStore(weights)
    tddfa = Tddfa.load(store, choose_regressor("auto", store), dev)
    dense = DenseBfm.load(store, tddfa.sparse)
    screen = torch.from_numpy(posed_mean_faces(dense.u, RENDER_BATCH, RENDER_SIZE)).float().to(dev)
    tri = torch.from_numpy(dense.tri).to(dev)
    sync = torch.cuda.synchronize if dev.startswith("cuda") else None
    rows = []
    for backend in ["torch"] + (["pytorch3d"] if pytorch3d_available() else []):
        renderer = get_renderer(backend)
        meshes = Meshes(screen, tri)
        cams = Cameras.identity(RENDER_BATCH, device=dev)
        covered: list[float] = []

        def render() -> None:
            out = renderer.render(meshes, cams, (RENDER_SIZE, RENDER_SIZE), shade=True)
            covered.append(float(out.mask.float().mean()))

        sec = timed(render, iters, sync)
        rows.append({"stage": f"render {backend}", "config": f"{RENDER_BATCH} meshes x {tri.shape[0]} tris @ {RENDER_SIZE}px",
                     "seconds": round(sec, 3), "items/s": round(RENDER_BATCH / sec, 1),
                     "note": f"coverage {covered[-1]:.0%}, shaded"})
    crops = np.random.default_rng(0).integers(0, 256, (max(batches), 120, 120, 3), dtype=np.uint8)
    for b in batches:
        sec = timed(lambda: tddfa.regress(crops[:b]), iters, sync)
        rows.append({"stage": f"regress {tddfa.name}", "config": f"batch {b}", "seconds": round(sec, 4),
                     "items/s": round(b / sec, 1), "note": "120x120 crops"})
    return {"bench": "prior", "device": dev, "dense_model": dense.source, "rows": rows}

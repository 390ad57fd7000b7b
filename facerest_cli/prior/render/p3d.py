"""The PyTorch3D backend: PyTorch3D's mesh rasterizer (``rasterize_meshes``, the kernel behind ``MeshRasterizer``)
plus the same simple shader as the torch backend. Imported only when pytorch3d is importable.

We project with ``Cameras.screen`` ourselves and hand PyTorch3D vertices already in its NDC space (+X left, +Y up,
the shorter image side spanning [-1, 1]) with the view depth as z -- exactly what ``MeshRasterizer`` passes to
``rasterize_meshes`` after its camera transform -- so both backends see identical geometry.
"""

from __future__ import annotations

import torch

from facerest_cli.prior.render.raster import Fragments
from facerest_cli.prior.render.shading import TorchRenderer


def to_ndc(screen: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Screen (x, y pixels, pixel-centre origin; z) -> PyTorch3D NDC (x, y; z unchanged)."""
    H, W = size
    s = float(min(H, W))
    x = (W - 1 - 2.0 * screen[..., 0]) / s
    y = (H - 1 - 2.0 * screen[..., 1]) / s
    return torch.stack([x, y, screen[..., 2]], dim=-1)


def rasterize_p3d(screen: torch.Tensor, faces: torch.Tensor, size: tuple[int, int], *, perspective_correct: bool,
                  cull_backfaces: bool = False) -> Fragments:
    from pytorch3d.renderer.mesh.rasterize_meshes import rasterize_meshes
    from pytorch3d.structures import Meshes as P3dMeshes

    B = screen.shape[0]
    faces = faces.to(device=screen.device, dtype=torch.int64)
    if faces.ndim == 2:
        faces = faces.unsqueeze(0).expand(B, -1, -1)
    keep = []
    for b in range(B):
        if cull_backfaces:  # our rule (raster.rasterize): keep faces whose screen-space signed area is < 0
            v = screen[b, :, :2].double()[faces[b]]
            area = (v[:, 1, 0] - v[:, 0, 0]) * (v[:, 2, 1] - v[:, 0, 1]) - (v[:, 1, 1] - v[:, 0, 1]) * (v[:, 2, 0] - v[:, 0, 0])
            keep.append((area < 0).nonzero().squeeze(1))
        else:
            keep.append(torch.arange(faces.shape[1], device=screen.device))
    mesh = P3dMeshes(verts=list(to_ndc(screen.float(), size)), faces=[faces[b][k] for b, k in enumerate(keep)])
    p2f, zbuf, bary, _ = rasterize_meshes(
        mesh, image_size=size, blur_radius=0.0, faces_per_pixel=1, perspective_correct=perspective_correct,
    )
    p2f = p2f[..., 0]
    # Packed face index -> index in the caller's face list of that mesh.
    lookup = torch.cat(keep) if keep else torch.zeros(0, dtype=torch.int64, device=p2f.device)
    local = torch.where(p2f >= 0, lookup[p2f.clamp(min=0)], p2f)
    return Fragments(local, zbuf[..., 0], bary[..., 0, :])


class Pytorch3dRenderer(TorchRenderer):
    """PyTorch3D's rasterizer with the built-in shader."""

    name = "pytorch3d"
    _rasterize = staticmethod(rasterize_p3d)

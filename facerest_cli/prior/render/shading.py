"""Vertex normals, the shared simple shader, and the built-in torch renderer."""

from __future__ import annotations

import torch

from facerest_cli.prior.render import Cameras, Meshes, RenderOutput
from facerest_cli.prior.render.raster import Fragments, interpolate, rasterize

AMBIENT = 0.25
DIFFUSE = 0.75


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted vertex normals ``(B, V, 3)`` (unit length; right-hand rule on the face winding)."""
    B, V, _ = verts.shape
    faces = faces.to(device=verts.device, dtype=torch.int64)
    if faces.ndim == 2:
        faces = faces.unsqueeze(0).expand(B, -1, -1)
    v0, v1, v2 = (torch.gather(verts, 1, faces[..., i : i + 1].expand(-1, -1, 3)) for i in range(3))
    fn = torch.cross(v1 - v0, v2 - v0, dim=-1)  # (B, F, 3), length = 2 * area
    n = torch.zeros_like(verts)
    for i in range(3):
        n.scatter_add_(1, faces[..., i : i + 1].expand(-1, -1, 3), fn)
    return torch.nn.functional.normalize(n, dim=-1, eps=1e-12)


def shade_fragments(fragments: Fragments, meshes: Meshes, *, shade: bool = True) -> torch.Tensor:
    """The simple shader shared by both backends: (B, H, W, 3) RGB in [0, 1], black background.

    Gouraud shading: each vertex gets its colour (white when the mesh has none) times the Lambert term
    ``AMBIENT + DIFFUSE * max(0, n . l)`` with the light at the camera (``l = (0, 0, -1)``, facing the mesh), and
    the result is interpolated with the barycentrics. Normals given with the mesh are used as they are; computed
    ones (``vertex_normals``) use ``|n . l|``, so either winding looks lit.
    """
    verts = meshes.verts
    if shade:
        if meshes.normals is not None:
            lam = (-meshes.normals[..., 2].to(torch.float32)).clamp(min=0.0)
        else:
            lam = vertex_normals(verts.to(torch.float32), meshes.faces)[..., 2].abs()
        intensity = (AMBIENT + DIFFUSE * lam).unsqueeze(-1)  # (B, V, 1)
    else:
        intensity = torch.ones(*verts.shape[:2], 1, dtype=torch.float32, device=verts.device)
    vert_rgb = intensity if meshes.colors is None else meshes.colors.to(torch.float32) * intensity
    out = interpolate(fragments, meshes.faces, vert_rgb)
    if out.shape[-1] == 1:
        out = out.expand(*out.shape[:-1], 3)
    return out.clamp(0.0, 1.0)


class TorchRenderer:
    """The built-in backend: ``raster.rasterize`` + ``shade``."""

    name = "torch"
    # The one thing a backend swaps: the rasterizer (same Fragments out, same shader after it).
    _rasterize = staticmethod(rasterize)

    def render(self, meshes: Meshes, cameras: Cameras, size: tuple[int, int], *, shade: bool = True,
               cull_backfaces: bool = False) -> RenderOutput:
        screen = cameras.screen(meshes.verts.to(torch.float32))
        frags = self._rasterize(screen, meshes.faces, size, perspective_correct=cameras.perspective,
                                cull_backfaces=cull_backfaces)
        return RenderOutput(images=shade_fragments(frags, meshes, shade=shade), depth=frags.zbuf, mask=frags.mask)

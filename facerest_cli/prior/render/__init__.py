"""Mesh rendering for the 3D prior: a small protocol and two backends.

Conventions (OpenCV camera): ``x`` right, ``y`` down, ``z`` forward, so depth is ``z`` and smaller is nearer.
Pixel coordinates have their origin at the centre of the top-left pixel (as everywhere in facerest).

* ``Meshes``: a batch of ``B`` meshes with the same vertex count -- vertices ``(B, V, 3)`` in camera space, faces
  ``(F, 3)`` (shared) or ``(B, F, 3)``, optional per-vertex RGB colours and/or normals.
* ``Cameras``: per-mesh focal lengths and principal points in pixels; perspective (pinhole) or orthographic
  (``x_pix = f * X + c``, which also covers the weak-perspective 3DDFA camera). ``Cameras.screen`` gives a
  renderer-independent projection; ``Cameras.identity`` is for meshes already in pixel coordinates.
* ``Renderer.render(meshes, cameras, (H, W))`` -> ``RenderOutput``: RGB images in [0, 1], depth, mask.

Backends: ``pytorch3d`` (its rasterizer plus the simple shader below) when pytorch3d is importable, else
``torch`` (``raster.rasterize``: batched z-buffer, perspective-correct barycentrics, no per-pixel Python loops).
Both shade the same way: interpolated vertex colours (white when none) times a Lambert term
``ambient + diffuse * max(0, n . l)`` with the light at the camera, when normals are given or computed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

BACKENDS = ("auto", "torch", "pytorch3d")


@dataclass
class Meshes:
    verts: "torch.Tensor"  # (B, V, 3) camera space
    faces: "torch.Tensor"  # (F, 3) or (B, F, 3) int64
    colors: "torch.Tensor | None" = None  # (B, V, 3) RGB in [0, 1]
    normals: "torch.Tensor | None" = None  # (B, V, 3) camera space; None with shade=True: computed

    @property
    def batch(self) -> int:
        return int(self.verts.shape[0])


@dataclass
class Cameras:
    focal: "torch.Tensor"  # (B, 2) fx, fy in pixels
    center: "torch.Tensor"  # (B, 2) cx, cy in pixels
    perspective: bool = True

    @classmethod
    def identity(cls, batch: int, device=None) -> "Cameras":
        """Orthographic camera for vertices already in pixel coordinates (x, y) with depth z."""
        import torch

        return cls(torch.ones(batch, 2, device=device), torch.zeros(batch, 2, device=device), perspective=False)

    def screen(self, verts: "torch.Tensor") -> "torch.Tensor":
        """Camera-space vertices (B, V, 3) -> screen (x pixels, y pixels, depth z)."""
        import torch

        z = verts[..., 2:3]
        xy = verts[..., :2] / z if self.perspective else verts[..., :2]
        xy = xy * self.focal.to(verts).unsqueeze(1) + self.center.to(verts).unsqueeze(1)
        return torch.cat([xy, z], dim=-1)


@dataclass
class RenderOutput:
    images: "torch.Tensor"  # (B, H, W, 3) float32 RGB [0, 1]; background 0
    depth: "torch.Tensor"  # (B, H, W) float32 camera depth; -1 where uncovered
    mask: "torch.Tensor"  # (B, H, W) bool


class Renderer(Protocol):
    name: str

    def render(self, meshes: Meshes, cameras: Cameras, size: tuple[int, int], *, shade: bool = True,
               cull_backfaces: bool = False) -> RenderOutput: ...


def pytorch3d_available() -> bool:
    if importlib.util.find_spec("pytorch3d") is None:
        return False
    try:
        import pytorch3d.renderer  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install (ABI mismatch) counts as absent
        return False
    return True


def active_backend(requested: str = "auto") -> str:
    """The backend ``get_renderer(requested)`` would use."""
    if requested not in BACKENDS:
        from facerest_cli.errors import UsageError

        raise UsageError(f"renderer must be one of {', '.join(BACKENDS)}; got {requested!r}")
    if requested == "auto":
        return "pytorch3d" if pytorch3d_available() else "torch"
    if requested == "pytorch3d" and not pytorch3d_available():
        from facerest_cli.errors import UsageError

        raise UsageError("the pytorch3d renderer was requested but pytorch3d is not importable (see README: installing pytorch3d)")
    return requested


def get_renderer(backend: str = "auto") -> Renderer:
    name = active_backend(backend)
    if name == "pytorch3d":
        from facerest_cli.prior.render.p3d import Pytorch3dRenderer

        return Pytorch3dRenderer()
    from facerest_cli.prior.render.shading import TorchRenderer

    return TorchRenderer()

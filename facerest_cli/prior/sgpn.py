"""The ``sgpn`` restorer's prior: D3DFR coefficients and the rendered 3D face in the aligned crop's frame.

With BFM09 installed the face is the textured, SH-lit BFM09 mesh from the coefficients (what SGPN was trained
with), projected by Deep3DFaceRecon's camera into its 224 crop and mapped into the restorer's S x S crop (the two
crops are related by a similarity, so it is rendered there directly, with perspective-correct interpolation).
Without BFM09 (it cannot be downloaded) the render is the 3DDFA dense mean face posed by the 3DDFA regressor,
as a shaded grey geometry image: an approximation SGPN was not trained on, noted in the report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from facerest_cli.prior.types import SgpnPrior
from facerest_cli.types import invert_affine

if TYPE_CHECKING:
    from facerest_cli.prior.bfm09 import Bfm09
    from facerest_cli.prior.d3dfr import D3dfr
    from facerest_cli.prior.morphable import DenseBfm
    from facerest_cli.prior.render import Renderer


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(2, 3) affines: ``outer o inner``."""
    a = np.vstack([outer, [0, 0, 1]]) @ np.vstack([inner, [0, 0, 1]])
    return a[:2]


def screen_meshes_to_camera(screen):
    """Screen vertices (x, y, view depth) -> camera-space vertices for a unit pinhole camera (x = X/Z, y = Y/Z):
    lets a mesh projected elsewhere be rendered with perspective-correct interpolation."""
    import torch

    s = torch.as_tensor(screen)
    z = s[..., 2:3]
    return torch.cat([s[..., :2] * z, z], -1)


class SgpnPriorBuilder:
    def __init__(self, d3dfr: "D3dfr | None", renderer: "Renderer", size: int, *, bfm09: "Bfm09 | None" = None,
                 dense: "DenseBfm | None" = None):
        """``d3dfr`` None: no coefficients (a restorer that takes only the mean-face render)."""
        if bfm09 is None and dense is None:
            raise ValueError("SGPN needs BFM09 or the dense 3DDFA mesh to render")
        if bfm09 is not None and d3dfr is None:
            raise ValueError("the BFM09 render needs the D3DFR coefficients")
        self.d3dfr, self.renderer, self.size = d3dfr, renderer, size
        self.bfm09, self.dense = bfm09, dense

    @property
    def source(self) -> str:
        return "bfm09" if self.bfm09 is not None else "3ddfa-mean-face"

    def build(self, images: Sequence[np.ndarray], lm5: Sequence[np.ndarray], crop_matrices: Sequence[np.ndarray],
              dense_image_verts: np.ndarray | None = None) -> list[SgpnPrior]:
        """One prior per face: its frame's pixels, detector landmarks and image -> crop matrix. The fallback
        render needs ``dense_image_verts`` (N, V, 3): the 3DDFA dense mesh in image coordinates."""
        import torch

        from facerest_cli.prior.render import Cameras, Meshes

        n = len(images)
        if n == 0:
            return []
        coeffs = None
        if self.d3dfr is not None:
            crops, mats = self.d3dfr.crops(images, lm5)
            coeffs = self.d3dfr.coeffs(crops)
        S = self.size
        if self.bfm09 is not None:
            screen224, colors = self.bfm09.reconstruct(torch.from_numpy(coeffs))
            verts = []
            for i in range(n):
                a = torch.from_numpy(compose(np.asarray(crop_matrices[i]), invert_affine(mats[i]))).float()
                xy = screen224[i, :, :2] @ a[:, :2].T + a[:, 2]
                verts.append(torch.cat([xy, screen224[i, :, 2:]], -1))
            meshes = Meshes(screen_meshes_to_camera(torch.stack(verts)), torch.from_numpy(self.bfm09.tri), colors=colors)
            cams = Cameras(torch.ones(n, 2), torch.zeros(n, 2), perspective=True)
            images_out = self.renderer.render(meshes, cams, (S, S), shade=False).images
        else:
            assert self.dense is not None and dense_image_verts is not None
            verts = torch.from_numpy(np.stack([
                crop_space_vertices(dense_image_verts[i], np.asarray(crop_matrices[i])) for i in range(n)
            ])).float()
            meshes = Meshes(verts, torch.from_numpy(self.dense.tri))
            images_out = self.renderer.render(meshes, Cameras.identity(n), (S, S), shade=True).images
        renders = images_out.cpu().numpy().astype(np.float32)
        return [SgpnPrior(render=renders[i], coeff=None if coeffs is None else coeffs[i].astype(np.float32),
                          source=self.source) for i in range(n)]


def crop_space_vertices(image_verts: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Image-space 3DDFA vertices (V, 3; z larger = nearer) -> crop screen space (x, y, depth > 0, smaller nearer)."""
    from facerest_cli.align.warp import affine_scale

    m = np.asarray(matrix, np.float64)
    xy = image_verts[:, :2] @ m[:, :2].T + m[:, 2]
    depth = -image_verts[:, 2] * affine_scale(m)
    return np.concatenate([xy, (depth - depth.min() + 1.0)[:, None]], 1)


def fallback_note() -> str:
    from facerest_cli.prior.bfm09 import WHY_NOT_DOWNLOADED

    return ("sgpn: BFM09 is not installed, so its 3D face input is the 3DDFA mean-face geometry (shaded grey), not "
            "the textured BFM09 face it was trained with. " + WHY_NOT_DOWNLOADED)


def needs_fits(builder: SgpnPriorBuilder | None) -> bool:
    return builder is not None and builder.bfm09 is None

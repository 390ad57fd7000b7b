"""BFM09 (Basel Face Model 2009) as Deep3DFaceRecon uses it: the 257 D3DFR coefficients -> a textured, lit mesh.

BFM09 is licensed by the University of Basel to each user who registers, so it cannot be downloaded by facerest.
The user imports Basel's ``01_MorphableModel.mat`` (``facerest weights import 01_MorphableModel.mat``). Read here:

* the raw Basel file (``shapeMU``, ``shapePC``, ``shapeEV``, ``texMU``, ``texPC``, ``texEV``, ``tl``): converted
  the way Deep3DFaceRecon's ``transferBFM09`` does for identity and texture (bases scaled by their standard
  deviations, the first 80 kept, shapes divided by 1e5). Deep3DFaceRecon's expression basis (``Exp_Pca.bin``, from
  another project) and its front-face vertex subset are not part of the Basel file: the 64 expression
  coefficients are then ignored and the whole BFM09 head is rendered;
* or an already converted front-face model (``meanshape``, ``idBase``, ``exBase``, ``meantex``, ``texBase``,
  ``tri``: Deep3DFaceRecon's ``BFM_model_front.mat`` / SGPN's ``BFM09_model_info.mat``), used as is.

Camera (Deep3DFaceRecon / SGPN ``BaseReconModel``): the face is centred on its mean shape, rotated by
``(Rz Ry Rx)^T`` from the angle coefficients, translated, seen from z = 10 looking down -z with a focal length of
1015 px on a 224 x 224 image (principal point 112, 112); image y grows downwards (``224 - y``). Colour: albedo x
second-order spherical-harmonics lighting (``gamma[:, :, 0] += 0.8``), in 0-255.

This path cannot be exercised with the real model in facerest's tests (the file is licence-gated); it is tested
on a small synthetic model in the same format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facerest_cli.errors import WeightsError, WeightsMissingError

if TYPE_CHECKING:
    import torch

    from facerest_cli.weights.cache import WeightsStore

FOCAL = 1015.0
CENTER = 112.0
CAMERA_DISTANCE = 10.0
CROP = 224

WHY_NOT_DOWNLOADED = (
    "BFM09 (the Basel Face Model 2009) is licensed by the University of Basel to each user who registers, so "
    "facerest cannot download it; request 01_MorphableModel.mat at https://faces.dmi.unibas.ch/bfm/main.php?nav=1-2&id=downloads, "
    "then run: facerest weights import 01_MorphableModel.mat"
)


@dataclass(frozen=True)
class Bfm09:
    meanshape: np.ndarray  # (V, 3) float32
    id_base: np.ndarray  # (V*3, 80)
    exp_base: np.ndarray | None  # (V*3, 64) or None (raw Basel file: no expression basis)
    meantex: np.ndarray  # (V, 3) 0-255
    tex_base: np.ndarray  # (V*3, 80)
    tri: np.ndarray  # (F, 3) int64, 0-based
    source: str

    @classmethod
    def load(cls, store: "WeightsStore") -> "Bfm09":
        path = store.locate("bfm09", "01_MorphableModel.mat")
        if path is None:
            raise WeightsMissingError(WHY_NOT_DOWNLOADED)
        return cls.from_mat(path)

    @classmethod
    def from_mat(cls, path: Path) -> "Bfm09":
        from scipy.io import loadmat

        try:
            d = loadmat(str(path))
        except (NotImplementedError, ValueError, OSError) as e:
            raise WeightsError(f"{path}: cannot read as a MATLAB v5 .mat file ({e})") from None
        if "meanshape" in d:
            try:
                meanshape = np.asarray(d["meanshape"], np.float32).reshape(-1, 3)
                exp = np.asarray(d["exBase"], np.float32)
                return cls(meanshape, np.asarray(d["idBase"], np.float32), exp,
                           np.asarray(d["meantex"], np.float32).reshape(-1, 3), np.asarray(d["texBase"], np.float32),
                           np.asarray(d["tri"], np.int64).reshape(-1, 3) - 1, "front-face model")
            except KeyError as e:
                raise WeightsError(f"{path}: converted BFM09 model lacks {e}") from None
        try:
            shape_ev = np.asarray(d["shapeEV"], np.float64).reshape(1, -1)
            tex_ev = np.asarray(d["texEV"], np.float64).reshape(1, -1)
            id_base = (np.asarray(d["shapePC"], np.float64) * shape_ev)[:, :80] / 1e5
            tex_base = (np.asarray(d["texPC"], np.float64) * tex_ev)[:, :80]
            meanshape = np.asarray(d["shapeMU"], np.float64).reshape(-1, 3) / 1e5
            meantex = np.asarray(d["texMU"], np.float64).reshape(-1, 3)
            tri = np.asarray(d["tl"], np.int64).reshape(-1, 3) - 1
        except KeyError as e:
            raise WeightsError(f"{path}: not Basel's 01_MorphableModel.mat (no {e})") from None
        return cls(meanshape.astype(np.float32), id_base.astype(np.float32), None, meantex.astype(np.float32),
                   tex_base.astype(np.float32), tri, "01_MorphableModel.mat (no expression basis)")

    def reconstruct(self, coeffs: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        """(N, 257) -> screen vertices (N, V, 3) in the 224 x 224 D3DFR crop (x, y pixels, view depth) and
        vertex colours (N, V, 3) RGB in [0, 1]."""
        import torch

        from facerest_cli.prior.render.shading import vertex_normals

        c = coeffs.to(torch.float32)
        dev = c.device
        n = c.shape[0]
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(dev)  # noqa: E731
        ident, expr, tex = c[:, :80], c[:, 80:144], c[:, 144:224]
        angles, gamma, trans = c[:, 224:227], c[:, 227:254], c[:, 254:257]
        mean = t(self.meanshape)
        shape = (ident @ t(self.id_base).T).view(n, -1, 3) + mean
        if self.exp_base is not None:
            shape = shape + (expr @ t(self.exp_base).T).view(n, -1, 3)
        shape = shape - mean.mean(0, keepdim=True)
        rot = rotation(angles)  # (N, 3, 3), applied as v @ rot
        verts = shape @ rot + trans.view(n, 1, 3)
        albedo = (tex @ t(self.tex_base).T).view(n, -1, 3) + t(self.meantex)
        faces = t(self.tri)
        normals = vertex_normals(shape, faces) @ rot
        color = albedo * sh_lighting(normals, gamma)
        depth = CAMERA_DISTANCE - verts[..., 2]
        x = FOCAL * verts[..., 0] / depth + CENTER
        y = CROP - (FOCAL * verts[..., 1] / depth + CENTER)
        return torch.stack([x, y, depth], -1), (color / 255.0).clamp(0.0, 1.0)


def rotation(angles: "torch.Tensor") -> "torch.Tensor":
    """Deep3DFaceRecon ``compute_rotation``: (N, 3) radians (x, y, z) -> (N, 3, 3), used as ``v @ R``."""
    import torch

    x, y, z = angles.unbind(1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rx = torch.stack([one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos()], 1).view(-1, 3, 3)
    ry = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], 1).view(-1, 3, 3)
    rz = torch.stack([z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one], 1).view(-1, 3, 3)
    return (rz @ ry @ rx).transpose(1, 2)


def sh_lighting(normals: "torch.Tensor", gamma: "torch.Tensor") -> "torch.Tensor":
    """Second-order SH irradiance (N, V, 3) for unit normals (N, V, 3) and 27 lighting coefficients (N, 27)."""
    import torch

    n = normals.shape[0]
    g = gamma.view(n, 3, 9).clone()
    g[:, :, 0] += 0.8
    a0, a1, a2 = math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0)
    c0, c1, c2 = 1 / math.sqrt(4 * math.pi), math.sqrt(3.0) / math.sqrt(4 * math.pi), 3 * math.sqrt(5.0) / math.sqrt(12 * math.pi)
    d0 = 0.5 / math.sqrt(3.0)
    nx, ny, nz = normals.unbind(-1)
    basis = torch.stack([
        torch.full_like(nx, a0 * c0), -a1 * c1 * ny, a1 * c1 * nz, -a1 * c1 * nx, a2 * c2 * nx * ny,
        -a2 * c2 * ny * nz, a2 * c2 * d0 * (3 * nz**2 - 1), -a2 * c2 * nx * nz, a2 * c2 * 0.5 * (nx**2 - ny**2),
    ], -1)  # (N, V, 9)
    return basis @ g.transpose(1, 2)  # (N, V, 3)

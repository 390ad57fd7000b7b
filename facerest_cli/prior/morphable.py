"""Morphable face models: the sparse 68-landmark BFM of 3DDFA and the dense no-neck BFM mesh.

Coordinates are 3DDFA's BFM units (about micrometres), ``(N, 3)`` rows of x, y, z (y up, z towards the viewer).
The 62 parameters of a 3DDFA regressor apply to both: ``P @ (u + w_shp @ alpha + w_exp @ beta) + t``.

Sparse (``bfm-sparse68``, always installed with the tests): mean shape and the 40 shape / 10 expression basis
vectors at the 68 landmarks, from 3DDFA v1's ``u_base.txt``, ``w_shp_base.txt`` and ``w_exp_base.txt``.

Dense (``bfm-noneck-v3``): 38,365 vertices and 76,073 triangles (``tri.pkl``). With the downloadable
``bfm_noneck_v3.pkl`` it has the full bases; without it, the *mean face* is recovered from ``ncc_code.npy``:
that file is the mean shape normalised per axis to [0, 1] (3DDFA_V2's PNCC code), and the 68 sparse landmarks
are exact vertices of it (``NONECK_KEYPOINTS_68``), so the per-axis scale and offset follow from a least-squares
fit against ``u_base`` (residual ~1e-7: the fit is checked). The mean face is then posed by the regressor's
camera but carries no identity or expression.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facerest_cli.errors import WeightsError

if TYPE_CHECKING:
    from facerest_cli.weights.cache import WeightsStore

# Vertex indices of the 68 landmarks in the 38,365-vertex no-neck BFM (dlib/iBUG order), found by matching the
# sparse model's mean landmarks to ncc_code.npy (an exact match up to float32 rounding; see module docstring).
NONECK_KEYPOINTS_68 = (
    17440, 17716, 17222, 16770, 33981, 34802, 35355, 35777, 36091, 36403, 36806, 37333, 38086, 29006, 28546, 28036,
    28276, 29704, 30401, 30791, 30996, 31163, 31902, 32068, 32276, 32670, 33376, 8161, 8177, 8187, 8192, 6515,
    7243, 8204, 9163, 9883, 2215, 3886, 4920, 5828, 4801, 3640, 10455, 11353, 12383, 14066, 12653, 11492, 5522,
    6025, 7495, 8215, 8935, 10395, 10795, 9555, 8836, 8236, 7636, 6915, 5909, 7384, 8223, 9064, 10537, 8829, 8229,
    7629,
)
SHAPE_DIM = 40
EXP_DIM = 10


@dataclass(frozen=True)
class SparseBfm:
    """68-landmark BFM: ``u`` (68, 3), ``w_shp`` (68, 3, 40), ``w_exp`` (68, 3, 10)."""

    u: np.ndarray
    w_shp: np.ndarray
    w_exp: np.ndarray

    @classmethod
    def from_dir(cls, files: dict[str, Path]) -> "SparseBfm":
        try:
            u = np.loadtxt(files["u_base.txt"], dtype=np.float64)
            w_shp = np.loadtxt(files["w_shp_base.txt"], dtype=np.float64)
            w_exp = np.loadtxt(files["w_exp_base.txt"], dtype=np.float64)
        except (OSError, ValueError) as e:
            raise WeightsError(f"bfm-sparse68: cannot read the sparse BFM bases: {e}") from None
        if u.shape != (204,) or w_shp.shape != (204, SHAPE_DIM) or w_exp.shape != (204, EXP_DIM):
            raise WeightsError(
                f"bfm-sparse68: expected u_base (204,), w_shp_base (204, 40), w_exp_base (204, 10); got "
                f"{u.shape}, {w_shp.shape}, {w_exp.shape}"
            )
        return cls(u.reshape(68, 3), w_shp.reshape(68, 3, SHAPE_DIM), w_exp.reshape(68, 3, EXP_DIM))

    @classmethod
    def load(cls, store: "WeightsStore") -> "SparseBfm":
        return cls.from_dir({k.split("/", 1)[1]: p for k, p in store.ensure_all("bfm-sparse68", progress=False).items()})

    def shape(self, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """(N, 40), (N, 10) -> (N, 68, 3) landmark positions in model space."""
        return self.u[None] + np.einsum("kdi,ni->nkd", self.w_shp, alpha) + np.einsum("kdi,ni->nkd", self.w_exp, beta)


@dataclass(frozen=True)
class DenseBfm:
    """Dense no-neck BFM: ``u`` (V, 3); ``w_shp`` (V, 3, 40) and ``w_exp`` (V, 3, 10) or None (mean face only);
    ``tri`` (F, 3) int64, wound counter-clockwise seen from outside (``outward_winding``); ``keypoints`` (68,)
    vertex indices; ``source`` says which files it came from."""

    u: np.ndarray
    w_shp: np.ndarray | None
    w_exp: np.ndarray | None
    tri: np.ndarray
    keypoints: np.ndarray
    source: str

    @property
    def mean_only(self) -> bool:
        return self.w_shp is None

    def vertices(self, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """(N, 40), (N, 10) -> (N, V, 3); the mean face for every N when the bases are not installed."""
        n = alpha.shape[0]
        if self.w_shp is None or self.w_exp is None:
            return np.broadcast_to(self.u[None], (n, *self.u.shape))
        return self.u[None] + np.einsum("vdi,ni->nvd", self.w_shp, alpha) + np.einsum("vdi,ni->nvd", self.w_exp, beta)

    @classmethod
    def load(cls, store: "WeightsStore", sparse: SparseBfm) -> "DenseBfm":
        """The full model when ``bfm_noneck_v3.pkl`` is installed (never downloaded implicitly), else the mean face."""
        from facerest_cli.weights.loader import numpy_pickle_load_safe

        tri = _load_tri(store.ensure("bfm-noneck-v3", "tri.pkl", progress=False))
        full = store.locate("bfm-noneck-v3", "bfm_noneck_v3.pkl")
        if full is not None:
            d = numpy_pickle_load_safe(full)
            try:
                u = np.asarray(d["u"], np.float64).reshape(-1, 3)
                w_shp = np.asarray(d["w_shp"], np.float64)[:, :SHAPE_DIM].reshape(-1, 3, SHAPE_DIM)
                w_exp = np.asarray(d["w_exp"], np.float64)[:, :EXP_DIM].reshape(-1, 3, EXP_DIM)
                kp = np.asarray(d["keypoints"]).reshape(-1)[::3] // 3
            except (KeyError, ValueError) as e:
                raise WeightsError(f"{full}: not a 3DDFA_V2 bfm_noneck_v3.pkl ({e})") from None
            if u.shape[0] != tri.max() + 1:
                raise WeightsError(f"{full}: {u.shape[0]} vertices, but tri.pkl indexes {tri.max() + 1}")
            return cls(u, w_shp, w_exp, outward_winding(u, tri), kp.astype(np.int64), "bfm_noneck_v3.pkl")
        ncc = np.load(store.ensure("bfm-noneck-v3", "ncc_code.npy", progress=False), allow_pickle=False)
        u = mean_face_from_ncc(ncc, sparse)
        return cls(u, None, None, outward_winding(u, tri), np.asarray(NONECK_KEYPOINTS_68, np.int64),
                   "mean face (ncc_code.npy + tri.pkl)")


def outward_winding(u: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Triangles reordered, if needed, so that right-hand normals point out of the face (+z on the front).

    3DDFA's ``tri.pkl`` is wound the other way; renderers that cull back faces need this orientation.
    """
    v = u[tri]
    nz = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])[:, 2]
    return np.ascontiguousarray(tri[:, [0, 2, 1]]) if nz.sum() < 0 else tri


def _load_tri(path: Path) -> np.ndarray:
    from facerest_cli.weights.loader import numpy_pickle_load_safe

    tri = np.asarray(numpy_pickle_load_safe(path))
    if tri.ndim != 2 or 3 not in tri.shape:
        raise WeightsError(f"{path}: expected a (3, F) triangle array, got shape {tri.shape}")
    tri = tri.T if tri.shape[0] == 3 else tri
    return np.ascontiguousarray(tri, dtype=np.int64)


def mean_face_from_ncc(ncc: np.ndarray, sparse: SparseBfm, tol: float = 1e-5) -> np.ndarray:
    """ncc_code (3, V) in [0, 1] -> the mean shape (V, 3) in BFM units, via the 68 shared landmarks."""
    ncc = np.asarray(ncc, np.float64)
    if ncc.ndim != 2 or ncc.shape[0] != 3 or ncc.shape[1] <= max(NONECK_KEYPOINTS_68):
        raise WeightsError(f"ncc_code.npy: expected (3, 38365), got {ncc.shape}")
    kp = np.asarray(NONECK_KEYPOINTS_68)
    out = np.empty((ncc.shape[1], 3))
    for d in range(3):
        a_mat = np.stack([sparse.u[:, d], np.ones(68)], 1)
        (a, b), *_ = np.linalg.lstsq(a_mat, ncc[d, kp], rcond=None)
        resid = np.abs(a_mat @ (a, b) - ncc[d, kp]).max()
        if resid > tol or a <= 0:
            raise WeightsError(f"ncc_code.npy does not match the sparse BFM landmarks (axis {d}: residual {resid:.2e})")
        out[:, d] = (ncc[d] - b) / a
    return out

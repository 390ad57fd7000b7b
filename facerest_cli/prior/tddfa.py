"""3DDFA_V2 MobileNetV1 regressors (``3ddfa-mb05``, ``3ddfa-mb1``): face box -> 62 3DMM parameters -> pose,
68 landmarks, shape coefficients and posed meshes, in image coordinates.

Conventions follow cleardusk/3DDFA_V2 (re-implemented here):

* ROI: ``roi_from_box`` expands the detector box as ``parse_roi_box_from_bbox`` does -- a square of side
  ``int(1.58 * mean(w, h))`` centred on the box centre moved down by ``0.14 * mean(w, h)``. The ROI is rounded to
  whole pixels, cut out with zero padding outside the image and resized to 120x120 (``INTER_LINEAR``).
* Input: BGR uint8, ``(x - 127.5) / 128``. Output: 62 normalised values, de-normalised with
  ``param_mean_std_62d_120x120.pkl``: 12 camera (3x4 ``P``, row-major) + 40 shape + 10 expression.
* Reconstruction: ``q = P[:, :3] @ (u + w_shp @ alpha + w_exp @ beta) + P[:, 3]`` in the 120x120 frame
  (1-based, y up). To the image: ``x = (q_x - 1) * sx + x0``, ``y = (120 - q_y) * sy + y0`` with ``sx, sy`` the
  ROI size over 120, and ``z = (q_z - 1) * (sx + sy) / 2`` (larger z = nearer the viewer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from facerest_cli.errors import UsageError, WeightsError
from facerest_cli.prior.morphable import EXP_DIM, SHAPE_DIM, DenseBfm, SparseBfm
from facerest_cli.prior.pose import camera_angles

if TYPE_CHECKING:
    import torch

    from facerest_cli.registry import Execution, Model
    from facerest_cli.weights.cache import WeightsStore

SIZE = 120
REGRESSORS = ("3ddfa-mb05", "3ddfa-mb1")
EYE_L, EYE_R, NOSE, MOUTH_L, MOUTH_R = slice(36, 42), slice(42, 48), 30, 48, 54


def roi_from_box(box: Sequence[float]) -> np.ndarray:
    """Detector box (x1, y1, x2, y2) -> 3DDFA_V2's square ROI (x1, y1, x2, y2), rounded to whole pixels."""
    left, top, right, bottom = (float(v) for v in box[:4])
    old = (right - left + bottom - top) / 2.0
    cx = right - (right - left) / 2.0
    cy = bottom - (bottom - top) / 2.0 + old * 0.14
    size = max(int(old * 1.58), 2)  # never empty, even for a degenerate box
    x0, y0 = cx - size / 2.0, cy - size / 2.0
    return np.array([round(x0), round(y0), round(x0 + size), round(y0 + size)], np.float64)


def box_from_landmarks(lm5: np.ndarray) -> np.ndarray:
    """A YuNet-like face box (x1, y1, x2, y2) from five landmarks, for faces without a detector box (``--aligned``).

    Fitted on the 63 YuNet faces (score >= 0.8) of ../shared/images/deepface and gfpgan/whole_imgs: the box centre
    sits a third of the way from the eye centre to the mouth centre (median 0.333, IQR 0.09), and the mean box side
    is 1.78 x hypot(eye-mouth distance, inter-ocular distance) (IQR 0.08), height / width 1.35.
    """
    lm = np.asarray(lm5, np.float64)
    e, m = (lm[0] + lm[1]) / 2, (lm[3] + lm[4]) / 2
    em, iod = np.linalg.norm(m - e), np.linalg.norm(lm[1] - lm[0])
    c = e + (m - e) / 3.0
    side = 1.78 * np.hypot(em, iod)
    w, h = side * 2 / 2.35, side * 2 * 1.35 / 2.35
    return np.array([c[0] - w / 2, c[1] - h / 2, c[0] + w / 2, c[1] + h / 2])


def roi_from_landmarks(pts: np.ndarray) -> np.ndarray:
    """68 landmarks (K, 2+) -> 3DDFA_V2's ``parse_roi_box_from_landmark`` square, rounded to whole pixels."""
    x1, y1 = pts[:, 0].min(), pts[:, 1].min()
    x2, y2 = pts[:, 0].max(), pts[:, 1].max()
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    r = max(x2 - x1, y2 - y1) / 2.0
    side = float(np.hypot(2 * r, 2 * r))
    x0, y0 = cx - side / 2.0, cy - side / 2.0
    return np.array([round(x0), round(y0), round(x0 + side), round(y0 + side)], np.float64)


def crop_roi(pixels: np.ndarray, roi: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Cut ``roi`` out of any decoded image (zero padding outside), as uint8 BGR resized to ``size``."""
    import cv2

    from facerest_cli.detect.base import to_detection_bgr

    h, w = pixels.shape[:2]
    sx, sy, ex, ey = (int(v) for v in roi)
    if ex <= sx or ey <= sy:
        raise ValueError(f"empty ROI {roi}")
    c = pixels.shape[2] if pixels.ndim == 3 else 1
    out = np.zeros((ey - sy, ex - sx, c), pixels.dtype)
    ax, ay, bx, by = max(sx, 0), max(sy, 0), min(ex, w), min(ey, h)
    if bx > ax and by > ay:
        out[ay - sy : by - sy, ax - sx : bx - sx] = pixels[ay:by, ax:bx].reshape(by - ay, bx - ax, c)
    return cv2.resize(to_detection_bgr(out), (size, size), interpolation=cv2.INTER_LINEAR)


@dataclass
class TddfaFit:
    """One face: de-normalised parameters and the ROI they refer to."""

    params: np.ndarray  # (62,) float64
    roi: np.ndarray  # (4,) x1, y1, x2, y2 (whole pixels)
    landmarks: np.ndarray = field(default=None)  # (68, 3) image x, y and z (larger = nearer)  # type: ignore[assignment]

    @property
    def camera(self) -> np.ndarray:
        return self.params[:12].reshape(3, 4)

    @property
    def alpha(self) -> np.ndarray:
        return self.params[12 : 12 + SHAPE_DIM]

    @property
    def beta(self) -> np.ndarray:
        return self.params[12 + SHAPE_DIM : 12 + SHAPE_DIM + EXP_DIM]

    @property
    def angles(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees."""
        return camera_angles(self.camera)

    @property
    def five(self) -> np.ndarray:
        """Eye centres, nose tip and mouth corners (5, 2) in the detector's landmark order."""
        lm = self.landmarks[:, :2]
        return np.stack([lm[EYE_L].mean(0), lm[EYE_R].mean(0), lm[NOSE], lm[MOUTH_L], lm[MOUTH_R]])

    def to_image(self, model_pts: np.ndarray) -> np.ndarray:
        """Model-space points (K, 3) -> image (K, 3): x, y pixels and z (larger = nearer)."""
        p = self.camera
        q = model_pts @ p[:, :3].T + p[:, 3]
        sx0, sy0, ex0, ey0 = self.roi
        scx, scy = (ex0 - sx0) / SIZE, (ey0 - sy0) / SIZE
        return np.stack([(q[:, 0] - 1.0) * scx + sx0, (SIZE - q[:, 1]) * scy + sy0, (q[:, 2] - 1.0) * (scx + scy) / 2.0], 1)


def unmirror_camera(p: np.ndarray) -> np.ndarray:
    """Camera(s) (..., 3, 4) regressed on a horizontally mirrored 120x120 crop -> the camera of the original crop.

    Mirroring maps crop column ``q_x`` (1-based) to ``121 - q_x``; a face model symmetric under ``x -> -x`` then
    gives ``P = D P' S`` and ``t = D t' + (121, 0, 0)`` with ``D = S = diag(-1, 1, 1)``.
    """
    d = np.array([-1.0, 1.0, 1.0])
    out = np.array(p, np.float64, copy=True)
    out[..., :3] = d[:, None] * out[..., :3] * d[None, :]
    out[..., 3] = d * out[..., 3]
    out[..., 0, 3] += SIZE + 1.0
    return out


class Tddfa:
    """A loaded 3DDFA regressor with its parameter statistics and the sparse BFM."""

    def __init__(self, model: "Model", mean: np.ndarray, std: np.ndarray, sparse: SparseBfm):
        import torch

        self.model = model
        self.name = model.name
        self.device = torch.device(model.device)
        self.mean = np.asarray(mean, np.float64).reshape(62)
        self.std = np.asarray(std, np.float64).reshape(62)
        self.sparse = sparse

    @classmethod
    def load(cls, store: "WeightsStore", name: str = "3ddfa-mb05", device: str = "cpu",
             execution: "Execution | None" = None) -> "Tddfa":
        from facerest_cli.registry import build
        from facerest_cli.weights.loader import numpy_pickle_load_safe

        if name not in REGRESSORS:
            raise UsageError(f"unknown 3D prior regressor {name!r}; choose one of {', '.join(REGRESSORS)}")
        model = build(name, store, device, execution=execution, role="prior")
        stats = numpy_pickle_load_safe(store.ensure("3ddfa-config", progress=False))
        try:
            mean, std = stats["mean"], stats["std"]
        except (KeyError, TypeError):
            raise WeightsError("3ddfa-config: param_mean_std_62d_120x120.pkl has no 'mean'/'std'") from None
        return cls(model, mean, std, SparseBfm.load(store))

    def regress(self, crops: np.ndarray) -> np.ndarray:
        """(N, 120, 120, 3) uint8 BGR crops -> (N, 62) de-normalised parameters (float64)."""
        import torch

        if len(crops) == 0:
            return np.zeros((0, 62))
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(crops).transpose(0, 3, 1, 2))).to(self.device)
        with torch.inference_mode():
            out = self.model(self.model.normalise_uint8(x)).double().cpu().numpy()
        return out * self.std + self.mean

    def fit(self, pixels: np.ndarray, rois: Sequence[np.ndarray]) -> list[TddfaFit]:
        """Regress every ROI of one image (any decoded dtype/channels) in one batch."""
        if not rois:
            return []
        return self.fit_crops(np.stack([crop_roi(pixels, r) for r in rois]), rois)

    def fit_crops(self, crops: np.ndarray, rois: Sequence[np.ndarray]) -> list[TddfaFit]:
        """(N, 120, 120, 3) uint8 BGR crops of ``rois`` -> fits, with flip averaging of the camera.

        Each crop is also regressed mirrored; that camera is mirrored back (``unmirror_camera``) and averaged with
        the direct one. A CNN is not exactly mirror-equivariant (yaw of a mirrored face was off by a median 2.3
        degrees); the average is, so a mirrored face gets exactly the opposite yaw and roll. Shape and
        expression stay those of the direct pass (the BFM bases have no simple mirror map).
        """
        n = len(crops)
        if n == 0:
            return []
        both = self.regress(np.concatenate([crops, np.ascontiguousarray(crops[:, :, ::-1])]))
        params = both[:n].copy()
        cams = (both[:n, :12].reshape(n, 3, 4) + unmirror_camera(both[n:, :12].reshape(n, 3, 4))) / 2.0
        params[:, :12] = cams.reshape(n, 12)
        return [self._finish(p, r) for p, r in zip(params, rois)]

    def fit_boxes(self, pixels: np.ndarray, boxes: Sequence[Sequence[float]], refine: bool = True) -> list[TddfaFit]:
        """Face boxes -> fits. ``refine`` runs a second pass on the ROI of the first pass's 68 landmarks
        (3DDFA_V2's ``crop_policy='landmark'``), which no longer depends on how the detector draws its boxes."""
        fits = self.fit(pixels, [roi_from_box(b) for b in boxes])
        if refine and fits:
            fits = self.fit(pixels, [roi_from_landmarks(f.landmarks) for f in fits])
        return fits

    def _finish(self, params: np.ndarray, roi: np.ndarray) -> TddfaFit:
        fit = TddfaFit(params=params, roi=np.asarray(roi, np.float64))
        fit.landmarks = fit.to_image(self.sparse.shape(fit.alpha[None], fit.beta[None])[0])
        return fit

    def dense_vertices(self, dense: DenseBfm, fits: Sequence[TddfaFit]) -> np.ndarray:
        """Posed dense meshes (N, V, 3) in image coordinates (z larger = nearer)."""
        if not fits:
            return np.zeros((0, dense.u.shape[0], 3))
        model = dense.vertices(np.stack([f.alpha for f in fits]), np.stack([f.beta for f in fits]))
        return np.stack([f.to_image(m) for f, m in zip(fits, model)])

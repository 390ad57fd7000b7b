"""``PriorStage``: the 3D prior between align and restore (a ``pipeline.BatchStage``).

Per restore batch, in the main thread:

* ``before_restore`` (first attempt of each face): one batched 3DDFA regression on the faces' ROIs in their
  original frames -> ``record.pose`` (yaw, pitch, roll in degrees and the 68 projected landmarks in image
  coordinates); with pose-adaptive strength, ``strength *= pose_factor(|yaw|, knots)`` (``prior.pose``) -- the
  strength applied is in ``record.strength`` and the factor in ``record.pose["strength_factor"]``; for the
  ``sgpn`` restorer, ``Frame.priors[i]`` gets an ``SgpnPrior`` (render + 257 coefficients).
* ``after_restore``: the shape-consistency score. The 40 shape coefficients are regressed from the input crop
  and from the restored crop (same face box, mapped into the crop), and ``record.shape`` gets their distance:
  the RMS over the 40 coefficients of the difference in units of each coefficient's population standard
  deviation (3DDFA's parameter statistics), flagged above the threshold. Retried faces (identity guard) are
  scored again on their latest restoration. No face is retried by this stage.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from facerest_cli.prior.morphable import SHAPE_DIM
from facerest_cli.prior.pose import pose_factor
from facerest_cli.prior.tddfa import box_from_landmarks, crop_roi, roi_from_box

if TYPE_CHECKING:
    from facerest_cli.config import PriorConfig, RunConfig
    from facerest_cli.pipeline import FaceJob
    from facerest_cli.prior.morphable import DenseBfm
    from facerest_cli.prior.sgpn import SgpnPriorBuilder
    from facerest_cli.prior.tddfa import Tddfa
    from facerest_cli.restore.base import Restorer
    from facerest_cli.weights.cache import WeightsStore

SHAPE_METRIC = "rms_sigma_40"


def shape_distance(alpha_in: np.ndarray, alpha_out: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """RMS over the shape coefficients of (input - restored) / population std; (N, 40) -> (N,)."""
    d = (np.asarray(alpha_in) - np.asarray(alpha_out)) / np.asarray(sigma)
    return np.sqrt((d**2).mean(axis=-1))


def crop_box(box: Sequence[float], matrix: np.ndarray) -> np.ndarray:
    """A face box in the image -> the same face's box in the aligned crop (centre mapped, size scaled; the crop
    is upright, so the box stays axis-aligned)."""
    from facerest_cli.align.warp import affine_scale

    m = np.asarray(matrix, np.float64)
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    cx, cy = m @ np.array([(x1 + x2) / 2, (y1 + y2) / 2, 1.0])
    s = affine_scale(m)
    hw, hh = (x2 - x1) * s / 2, (y2 - y1) * s / 2
    return np.array([cx - hw, cy - hh, cx + hw, cy + hh])


def to_u8(restored: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(restored * 255.0), 0, 255).astype(np.uint8)


class PriorStage:
    name = "prior"

    def __init__(self, cfg: "PriorConfig", tddfa: "Tddfa", *, pose_adaptive: bool, sgpn: "SgpnPriorBuilder | None" = None,
                 dense: "DenseBfm | None" = None, renderer: str = "torch", notes: Sequence[str] = (),
                 aligned: bool = False):
        self.cfg = cfg
        self.aligned = aligned  # --aligned: no detector box (it is the whole image); use one from the landmarks
        self.tddfa = tddfa
        self.pose_adaptive = pose_adaptive
        self.sgpn = sgpn
        self.dense = dense
        self.renderer = renderer
        self.notes = list(notes)
        self._sigma = tddfa.std[12 : 12 + SHAPE_DIM]
        self._yaws: list[float] = []
        self._factors: list[float] = []
        self._distances: list[float] = []
        self._flagged = 0

    def _box(self, job: "FaceJob") -> np.ndarray:
        d = job.face.detection
        return box_from_landmarks(d.landmarks) if self.aligned else np.asarray(d.box, np.float64)

    # ------------------------------------------------------------------------------------------ before restore

    def before_restore(self, jobs: list["FaceJob"]) -> None:
        first = [j for j in jobs if j.attempt == 0]
        if not first:
            return
        rois = [roi_from_box(self._box(j)) for j in first]
        crops = np.stack([crop_roi(j.frame.image.pixels, r) for j, r in zip(first, rois)])
        fits = self.tddfa.fit_crops(crops, rois)
        for j, fit in zip(first, fits):
            yaw, pitch, roll = fit.angles
            pose: dict[str, Any] = {
                "yaw": round(yaw, 2), "pitch": round(pitch, 2), "roll": round(roll, 2),
                "landmarks68": [[round(float(x), 2), round(float(y), 2)] for x, y in fit.landmarks[:, :2]],
                "regressor": self.tddfa.name,
            }
            self._yaws.append(abs(yaw))
            if self.pose_adaptive:
                f = pose_factor(abs(yaw), self.cfg.pose_knots)
                pose["strength_factor"] = round(f, 4)
                self._factors.append(f)
                if f < 1.0:
                    j.strength = j.strength * f
            j.record.pose = pose
        if self.sgpn is not None:
            from facerest_cli.prior.sgpn import needs_fits

            dense_verts = self.tddfa.dense_vertices(self.sgpn.dense, fits) if needs_fits(self.sgpn) else None
            priors = self.sgpn.build([j.frame.image.pixels for j in first], [j.face.detection.landmarks for j in first],
                                     [j.face.matrix for j in first], dense_verts)
            for j, p in zip(first, priors):
                j.frame.priors[j.i] = p
                if p.source != "bfm09":
                    j.record.notes.append("sgpn prior: 3DDFA mean-face geometry (BFM09 not installed)")

    # ------------------------------------------------------------------------------------------- after restore

    def after_restore(self, jobs: list["FaceJob"]) -> list["FaceJob"]:
        if not self.cfg.shape_check:
            return []
        done = [j for j in jobs if j.restored is not None]
        if not done:
            return []
        rois = [roi_from_box(crop_box(self._box(j), j.face.matrix)) for j in done]
        ins = [crop_roi(j.crop, r) for j, r in zip(done, rois)]
        outs = [crop_roi(to_u8(j.restored), r) for j, r in zip(done, rois)]
        params = self.tddfa.regress(np.stack(ins + outs))
        n = len(done)
        dist = shape_distance(params[:n, 12 : 12 + SHAPE_DIM], params[n:, 12 : 12 + SHAPE_DIM], self._sigma)
        thr = self.cfg.shape_threshold
        for j, d in zip(done, dist):
            flag = bool(d > thr)
            j.record.shape = {"distance": round(float(d), 4), "flag": flag, "threshold": thr, "metric": SHAPE_METRIC,
                              "attempt": j.attempt}
            if j.attempt == 0:
                self._distances.append(float(d))
                self._flagged += flag
        return []

    # ------------------------------------------------------------------------------------------------ summary

    def summary(self) -> dict:
        out: dict[str, Any] = {
            "regressor": self.tddfa.name,
            "renderer": self.renderer,
            "faces": len(self._yaws),
            "pose_adaptive": self.pose_adaptive,
            "knots": [list(k) for k in self.cfg.pose_knots],
        }
        if self._yaws:
            out["median_abs_yaw"] = round(statistics.median(self._yaws), 2)
        if self._factors:
            out["strength_lowered"] = sum(f < 1.0 for f in self._factors)
            out["min_strength_factor"] = round(min(self._factors), 4)
        if self.cfg.shape_check:
            out["shape_threshold"] = self.cfg.shape_threshold
            out["shape_flagged"] = self._flagged
            if self._distances:
                out["median_shape_distance"] = round(statistics.median(self._distances), 4)
        if self.sgpn is not None:
            out["sgpn_render"] = self.sgpn.source
        if self.dense is not None:
            out["dense_model"] = self.dense.source
        if self.notes:
            out["notes"] = self.notes
        return {"prior": out}


# --------------------------------------------------------------------------------------------------- building


def choose_regressor(name: str, store: "WeightsStore") -> str:
    """``auto`` -> the first regressor installed (mb05, then mb1), else mb05 (fetched if downloads are on)."""
    from facerest_cli.prior.tddfa import REGRESSORS

    if name != "auto":
        return name
    for r in REGRESSORS:
        if store.locate(r) is not None:
            return r
    return REGRESSORS[0]


class SkippedPrior:
    """``--prior auto`` without its weights (offline, or the download failed): no work, one line in the summary."""

    name = "prior"

    def __init__(self, reason: str):
        self.reason = reason

    def before_restore(self, jobs: list["FaceJob"]) -> None:
        pass

    def after_restore(self, jobs: list["FaceJob"]) -> list["FaceJob"]:
        return []

    def summary(self) -> dict:
        return {"prior": {"skipped": self.reason}}


def build_prior_stage(cfg: "RunConfig", store: "WeightsStore", device: str,
                      restorer: "Restorer") -> "PriorStage | SkippedPrior | None":
    """The stage for ``cfg.prior``: None when it is off, ``SkippedPrior`` when ``auto`` cannot get its weights.

    Raises ``UsageError``/``WeightsError`` for an explicit ``--prior`` that cannot be loaded, and when the restorer
    needs the prior (sgpn) but it is off.
    """
    from facerest_cli.errors import UsageError, WeightsError
    from facerest_cli.prior.render import active_backend
    from facerest_cli.prior.tddfa import Tddfa

    pc = cfg.prior
    needs = bool(getattr(restorer, "needs_prior", False))
    if pc.prior == "off":
        if needs:
            raise UsageError(f"--prior off cannot be used with the {restorer.name} restorer, which needs the 3D prior")
        return None
    name = choose_regressor(pc.prior, store)
    try:
        tddfa = Tddfa.load(store, name, device)
    except WeightsError as e:
        if pc.prior != "auto" or needs:
            raise
        return SkippedPrior(f"3D prior skipped (no pose, pose-adaptive strength or shape check): {e}")
    notes: list[str] = []
    backend = active_backend(pc.renderer)
    sgpn = dense = None
    if needs:
        sgpn, dense, note = _sgpn_builder(store, device, restorer.size, pc.renderer, pc.sgpn_render)
        if note:
            notes.append(note)
    pose_adaptive = True if pc.pose_adaptive is None else pc.pose_adaptive
    return PriorStage(pc, tddfa, pose_adaptive=pose_adaptive, sgpn=sgpn, dense=dense, renderer=backend, notes=notes,
                      aligned=cfg.aligned)


def _sgpn_builder(store: "WeightsStore", device: str, size: int, renderer: str, render_with: str = "bfm09"):
    from facerest_cli.prior.bfm09 import Bfm09
    from facerest_cli.prior.d3dfr import D3dfr
    from facerest_cli.prior.morphable import DenseBfm, SparseBfm
    from facerest_cli.prior.render import get_renderer
    from facerest_cli.prior.sgpn import SgpnPriorBuilder, fallback_note

    d3dfr = D3dfr.load(store, device)
    if render_with == "bfm09":
        # Missing BFM09 raises WeightsMissingError (exit 2) saying where to obtain it: SGPN is never silently fed
        # a geometry it was not trained on.
        bfm09 = Bfm09.load(store)
        return SgpnPriorBuilder(d3dfr, get_renderer(renderer), size, bfm09=bfm09), None, None
    dense = DenseBfm.load(store, SparseBfm.load(store))
    return SgpnPriorBuilder(d3dfr, get_renderer(renderer), size, dense=dense), dense, fallback_note()

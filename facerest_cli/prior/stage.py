"""``PriorStage``: the 3D prior between align and restore (a ``pipeline.BatchStage``).

Per restore batch (a ``types.BatchStage``):

* ``before_restore`` (first attempt of each face): one batched 3DDFA regression on the faces' ROIs in their
  original frames -> ``record.pose`` (``types.Pose``: yaw, pitch, roll in degrees and the 68 projected landmarks
  in image coordinates); with pose-adaptive strength, ``strength *= pose_factor(|yaw|, knots)`` (``prior.pose``)
  -- the strength applied is in ``record.strength`` and the factor in ``record.pose.strength_factor``; for the
  ``sgpn`` restorer, ``FaceState.prior`` gets an ``SgpnPrior`` (render + 257 coefficients).
* ``after_restore``: the shape-consistency score. The 40 shape coefficients are regressed from the input crop
  and from the restored crop (same face box, mapped into the crop), and ``record.shape`` gets their distance:
  the RMS over the 40 coefficients of the difference in units of each coefficient's population standard
  deviation (3DDFA's parameter statistics), flagged above the threshold. Retried faces (identity guard) are
  scored again on their latest restoration. No face is retried by this stage.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from facerest_cli.prior.morphable import SHAPE_DIM
from facerest_cli.pixels import from_float
from facerest_cli.prior.pose import pose_factor
from facerest_cli.detect.plausible import landmarks_agree
from facerest_cli.prior.tddfa import box_from_landmarks, crop_roi, roi_from_box
from facerest_cli.types import FaceState, Pose, ShapeCheck

if TYPE_CHECKING:
    from facerest_cli.config import PriorConfig, RunConfig
    from facerest_cli.registry import Execution
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


@dataclass(frozen=True)
class PriorSummary:
    """summary.json ``prior``: what the 3D prior did over the run (or why it was skipped)."""

    key: ClassVar[str] = "prior"
    regressor: str | None = None
    renderer: str | None = None
    faces: int | None = None
    pose_adaptive: bool | None = None
    knots: list[list[float]] | None = None
    median_abs_yaw: float | None = None
    strength_lowered: int | None = None
    min_strength_factor: float | None = None
    shape_threshold: float | None = None
    shape_flagged: int | None = None
    median_shape_distance: float | None = None
    landmarks_disagree: int | None = None
    sgpn_render: str | None = None
    dense_model: str | None = None
    notes: list[str] | None = None
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class PriorTally:
    """The per-face results summary.json's ``prior`` block is computed from (``summary``): the stage's fixed facts
    and, per face's first attempt, |yaw|, the pose factor and the shape distance. An engine that splits a run
    across workers takes each worker's tally per task (``take_tally``) and ``merge``s them on its driver."""

    regressor: str | None = None
    renderer: str | None = None
    pose_adaptive: bool | None = None
    knots: list[list[float]] | None = None
    shape_threshold: float | None = None  # None: no shape check
    sgpn_render: str | None = None
    dense_model: str | None = None
    notes: list[str] | None = None
    skipped: str | None = None
    yaws: list[float] = field(default_factory=list)
    factors: list[float] = field(default_factory=list)
    distances: list[float] = field(default_factory=list)
    flagged: int = 0
    disagree: int = 0  # detections whose 5 landmarks the 3D fit contradicts (not restored unless kept)

    def fresh(self) -> "PriorTally":
        """An empty tally with the same fixed facts."""
        return replace(self, yaws=[], factors=[], distances=[], flagged=0, disagree=0)

    def merge(self, other: "PriorTally") -> None:
        self.yaws += other.yaws
        self.factors += other.factors
        self.distances += other.distances
        self.flagged += other.flagged
        self.disagree += other.disagree

    def summary(self) -> PriorSummary:
        if self.skipped is not None:
            return PriorSummary(skipped=self.skipped)
        shape = self.shape_threshold is not None
        return PriorSummary(
            regressor=self.regressor,
            renderer=self.renderer,
            faces=len(self.yaws),
            pose_adaptive=self.pose_adaptive,
            knots=self.knots,
            median_abs_yaw=round(statistics.median(self.yaws), 2) if self.yaws else None,
            strength_lowered=sum(f < 1.0 for f in self.factors) if self.factors else None,
            min_strength_factor=round(min(self.factors), 4) if self.factors else None,
            shape_threshold=self.shape_threshold,
            shape_flagged=self.flagged if shape else None,
            median_shape_distance=round(statistics.median(self.distances), 4) if shape and self.distances else None,
            landmarks_disagree=self.disagree,
            sgpn_render=self.sgpn_render,
            dense_model=self.dense_model,
            notes=self.notes,
        )


class PriorStage:
    name = "prior"
    # The fit needs only the frame and its detection, and runs on first attempts only: the scheduler runs it as
    # frames are prepared, overlapping the restorer (BatchStage). The shape check after never retries.
    on_input = True
    retries = False
    needs: frozenset[str] = frozenset({"crop", "strength", "restored", "record"})
    provides: frozenset[str] = frozenset({"strength", "prior"})
    finalizes: frozenset[str] = frozenset()

    def __init__(self, cfg: "PriorConfig", tddfa: "Tddfa", *, pose_adaptive: bool, sgpn: "SgpnPriorBuilder | None" = None,
                 dense: "DenseBfm | None" = None, renderer: str = "torch", notes: Sequence[str] = (),
                 aligned: bool = False, check_landmarks: bool = True):
        self.cfg = cfg
        # Detection's last plausibility check (issue 12): a box whose landmarks the 3D fit contradicts is a face
        # part or a non-face; it keeps strength 0 (nothing hallucinated is pasted) unless --keep-all-detections.
        self.check_landmarks = check_landmarks and not aligned
        self.aligned = aligned  # --aligned: no detector box (it is the whole image); use one from the landmarks
        self.tddfa = tddfa
        self.pose_adaptive = pose_adaptive
        self.sgpn = sgpn
        self.dense = dense
        self.renderer = renderer
        self.notes = list(notes)
        self._sigma = tddfa.std[12 : 12 + SHAPE_DIM]
        self.tally = PriorTally(
            regressor=tddfa.name, renderer=renderer, pose_adaptive=pose_adaptive,
            knots=[list(k) for k in cfg.pose_knots], shape_threshold=cfg.shape_threshold if cfg.shape_check else None,
            sgpn_render=sgpn.source if sgpn is not None else None, dense_model=dense.source if dense is not None else None,
            notes=self.notes or None,
        )

    def _box(self, job: FaceState) -> np.ndarray:
        d = job.face.detection
        return box_from_landmarks(d.landmarks) if self.aligned else np.asarray(d.box, np.float64)

    # ------------------------------------------------------------------------------------------ before restore

    def before_restore(self, jobs: list[FaceState]) -> None:
        first = [j for j in jobs if j.attempt == 0]
        if not first:
            return
        rois = [roi_from_box(self._box(j)) for j in first]
        crops = np.stack([crop_roi(j.frame.pixels, r) for j, r in zip(first, rois)])
        fits = self.tddfa.fit_crops(crops, rois)
        for j, fit in zip(first, fits):
            yaw, pitch, roll = fit.angles
            factor = None
            if self.check_landmarks:
                agree, score = landmarks_agree(j.face.detection.landmarks, fit.landmarks[:, :2])
                if not agree:
                    self.tally.disagree += 1
                    j.set_strength(0.0)
                    j.record.notes.append(f"not restored: the 3D prior's landmarks disagree with the detection "
                                          f"(score {score:.2f} > 0.25): a face part or not a face")
            self.tally.yaws.append(abs(yaw))
            if self.pose_adaptive:
                f = pose_factor(abs(yaw), self.cfg.pose_knots)
                factor = round(f, 4)
                self.tally.factors.append(f)
                if f < 1.0:
                    j.set_strength(j.strength * f)
            j.record.pose = Pose(
                yaw=round(yaw, 2), pitch=round(pitch, 2), roll=round(roll, 2),
                landmarks68=[[round(float(x), 2), round(float(y), 2)] for x, y in fit.landmarks[:, :2]],
                regressor=self.tddfa.name, strength_factor=factor,
            )
        if self.sgpn is not None:
            from facerest_cli.prior.sgpn import needs_fits

            dense_verts = self.tddfa.dense_vertices(self.sgpn.dense, fits) if needs_fits(self.sgpn) else None
            priors = self.sgpn.build([j.frame.pixels for j in first], [j.face.detection.landmarks for j in first],
                                     [j.face.matrix for j in first], dense_verts)
            for j, p in zip(first, priors):
                j.prior = p
                if p.source != "bfm09":
                    j.record.notes.append("3D prior render: 3DDFA mean-face geometry, not BFM09 (--sgpn-render mean-face)")

    # ------------------------------------------------------------------------------------------- after restore

    def after_restore(self, jobs: list[FaceState]) -> list[FaceState]:
        if not self.cfg.shape_check:
            return []
        done = [j for j in jobs if j.restored is not None]
        if not done:
            return []
        rois = [roi_from_box(crop_box(self._box(j), j.face.matrix)) for j in done]
        ins = [crop_roi(j.crop, r) for j, r in zip(done, rois)]
        outs = [crop_roi(from_float(j.restored, np.uint8), r) for j, r in zip(done, rois)]
        params = self.tddfa.regress(np.stack(ins + outs))
        n = len(done)
        dist = shape_distance(params[:n, 12 : 12 + SHAPE_DIM], params[n:, 12 : 12 + SHAPE_DIM], self._sigma)
        thr = self.cfg.shape_threshold
        for j, d in zip(done, dist):
            flag = bool(d > thr)
            j.record.shape = ShapeCheck(distance=round(float(d), 4), flag=flag, threshold=thr, metric=SHAPE_METRIC,
                                        attempt=j.attempt)
            if j.attempt == 0:
                self.tally.distances.append(float(d))
                self.tally.flagged += flag
        return []

    # ------------------------------------------------------------------------------------------------ summary

    def summary(self) -> PriorSummary:
        return self.tally.summary()

    def take_tally(self) -> PriorTally:
        """The faces done since the last call, and a fresh tally for the next ones."""
        tally, self.tally = self.tally, self.tally.fresh()
        return tally


# --------------------------------------------------------------------------------------------------- building


def choose_regressor(name: str, store: "WeightsStore") -> str:
    """``auto`` -> the best regressor installed (weights.toml ``auto`` ranks: mb05, then mb1), else the one to
    fetch (mb05)."""
    from facerest_cli.registry import pick_auto

    if name != "auto":
        return name
    picked = pick_auto("prior", store)
    assert picked is not None, "weights.toml: no prior regressor has an auto rank"
    return picked


class SkippedPrior:
    """``--prior auto`` without its weights (offline, or the download failed): no work, one line in the summary."""

    name = "prior"
    on_input = True
    retries = False
    needs: frozenset[str] = frozenset()
    provides: frozenset[str] = frozenset()
    finalizes: frozenset[str] = frozenset()

    def __init__(self, reason: str):
        self.reason = reason
        self.tally = PriorTally(skipped=reason)

    def before_restore(self, jobs: list[FaceState]) -> None:
        pass

    def after_restore(self, jobs: list[FaceState]) -> list[FaceState]:
        return []

    def summary(self) -> PriorSummary:
        return self.tally.summary()

    def take_tally(self) -> PriorTally:
        return self.tally.fresh()


def build_prior_stage(cfg: "RunConfig", store: "WeightsStore", device: str, restorer: "Restorer",
                      execution: "Execution | None" = None) -> "PriorStage | SkippedPrior | None":
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
        tddfa = Tddfa.load(store, name, device, execution)
    except WeightsError as e:
        if pc.prior != "auto" or needs:
            raise
        return SkippedPrior(f"3D prior skipped (no pose, pose-adaptive strength or shape check): {e}")
    notes: list[str] = []
    backend = active_backend(pc.renderer)
    sgpn = dense = None
    if needs:
        need_coeff = "coeff" in getattr(restorer, "prior_fields", ("render", "coeff"))
        sgpn, dense, note = _sgpn_builder(store, device, restorer.size, pc.renderer, pc.sgpn_render,
                                          need_coeff=need_coeff, execution=execution)
        if note:
            notes.append(note)
    pose_adaptive = True if pc.pose_adaptive is None else pc.pose_adaptive
    return PriorStage(pc, tddfa, pose_adaptive=pose_adaptive, sgpn=sgpn, dense=dense, renderer=backend, notes=notes,
                      aligned=cfg.aligned, check_landmarks=not cfg.detect.keep_all)


def _sgpn_builder(store: "WeightsStore", device: str, size: int, renderer: str, render_with: str = "bfm09", *,
                  need_coeff: bool = True, execution: "Execution | None" = None):
    """The render (+ D3DFR coefficients) builder. The BFM09 render needs the coefficients; the mean-face render
    needs them only when the restorer itself takes them (SGPN does, 3Diffusion does not)."""
    from facerest_cli.prior.bfm09 import Bfm09
    from facerest_cli.prior.d3dfr import D3dfr
    from facerest_cli.prior.morphable import DenseBfm, SparseBfm
    from facerest_cli.prior.render import get_renderer
    from facerest_cli.prior.sgpn import SgpnPriorBuilder, fallback_note

    d3dfr = D3dfr.load(store, device, execution) if render_with == "bfm09" or need_coeff else None
    if render_with == "bfm09":
        # Missing BFM09 raises WeightsMissingError (exit 2) saying where to obtain it: SGPN is never silently fed
        # a geometry it was not trained on.
        bfm09 = Bfm09.load(store)
        return SgpnPriorBuilder(d3dfr, get_renderer(renderer), size, bfm09=bfm09), None, None
    dense = DenseBfm.load(store, SparseBfm.load(store))
    return SgpnPriorBuilder(d3dfr, get_renderer(renderer), size, dense=dense), dense, fallback_note()

"""Face-specific scores of a restored aligned face against its reference: identity (ArcFace cosine and its angle
"Deg"), landmark distance (LMD) and 3DMM shape distance.

All three take aligned faces -- ``(S, S, 3)`` uint8 BGR crops on the FFHQ template (``align.templates``), as
``facerest degrade`` writes and restorers output -- so the five template points locate the face; nothing is
re-detected (a detector would measure itself on a hallucinated face, not the restoration).

* **Identity**: each face is warped to the ArcFace 112x112 template from the FFHQ template points
  (``identity.align.align_input``) and embedded by the named recognizer (default ``arcface-mobilefacenet``);
  ``cos`` is the cosine of the two unit embeddings and ``deg = degrees(arccos(cos))`` the angle GFPGAN/PULSE
  tables report as "Deg" (lower is better).
* **LMD**: 68 landmarks by the named 3DDFA regressor (default ``3ddfa-mb05``, 3DDFA_V2 with the 3DDFA sparse BFM),
  fitted on the *same* ROI in both images: the ROI of the reference's own landmarks (3DDFA_V2's landmark crop
  policy, after a first pass on the template box), so a difference is the faces', not the crops'. LMD is the mean
  Euclidean distance of the 68 2D points in pixels of the evaluated image (lower is better).
* **Shape**: the 40 shape coefficients of the same two fits; their distance is ``prior.stage.shape_distance``,
  the RMS of the difference in units of each coefficient's population std -- the number ``facerest run``
  reports per face as ``shape.distance`` (lower is better).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from facerest_cli.identity.recognizers import Recognizer
    from facerest_cli.prior.tddfa import Tddfa


def template_landmarks(width: int, height: int) -> np.ndarray:
    """The five FFHQ-template points ``(5, 2)`` of an aligned face of this size."""
    from facerest_cli.align.templates import template_points

    pts = template_points("ffhq512", 512).copy()
    pts[:, 0] *= width / 512.0
    pts[:, 1] *= height / 512.0
    return pts


def arcface_crops(images_bgr: Sequence[np.ndarray]) -> np.ndarray:
    """Aligned faces -> ``(N, 112, 112, 3)`` float32 BGR [0, 1] ArcFace crops."""
    from facerest_cli.identity.align import align_input

    return np.stack([align_input(im, template_landmarks(im.shape[1], im.shape[0])) for im in images_bgr])


@dataclass(frozen=True)
class IdentityScores:
    """``cos`` ``(N,)`` in [-1, 1] and ``deg`` ``(N,)`` in [0, 180], float64."""

    cos: np.ndarray
    deg: np.ndarray


def identity_scores(rec: "Recognizer", restored: Sequence[np.ndarray],
                    reference: Sequence[np.ndarray]) -> IdentityScores:
    from facerest_cli.identity.recognizers import cosine

    a = rec.embed(arcface_crops(restored)).vectors
    b = rec.embed(arcface_crops(reference)).vectors
    cos = cosine(a, b).astype(np.float64)
    return IdentityScores(cos, np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


@dataclass(frozen=True)
class GeometryScores:
    """``lmd`` ``(N,)`` mean 68-landmark distance in pixels; ``shape`` ``(N,)`` RMS shape distance in std units."""

    lmd: np.ndarray
    shape: np.ndarray


def geometry_scores(tddfa: "Tddfa", restored: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> GeometryScores:
    """LMD and shape distance of each restored face against its reference (one batched regression per pass)."""
    from facerest_cli.prior.morphable import SHAPE_DIM
    from facerest_cli.prior.stage import shape_distance
    from facerest_cli.prior.tddfa import box_from_landmarks, crop_roi, roi_from_box, roi_from_landmarks

    n = len(restored)
    if n == 0:
        return GeometryScores(np.zeros(0), np.zeros(0))
    first = [roi_from_box(box_from_landmarks(template_landmarks(im.shape[1], im.shape[0]))) for im in reference]
    coarse = tddfa.fit_crops(np.stack([crop_roi(im, r) for im, r in zip(reference, first)]), first)
    rois = [roi_from_landmarks(f.landmarks) for f in coarse]
    crops = [crop_roi(im, r) for im, r in zip(list(reference) + list(restored), rois + rois)]
    fits = tddfa.fit_crops(np.stack(crops), rois + rois)
    ref, res = fits[:n], fits[n:]
    lmd = np.array([np.linalg.norm(a.landmarks[:, :2] - b.landmarks[:, :2], axis=1).mean() for a, b in zip(res, ref)])
    sigma = tddfa.std[12 : 12 + SHAPE_DIM]
    shape = shape_distance(np.stack([f.alpha for f in ref]), np.stack([f.alpha for f in res]), sigma)
    return GeometryScores(lmd.astype(np.float64), np.asarray(shape, np.float64))

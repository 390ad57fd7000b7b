"""Is a candidate's 5-point layout a face's? And does it agree with the 3D prior's projected landmarks?

The layout check works in the face's own frame, so it holds under any roll: the *down* axis runs from the eye
midpoint to the mouth midpoint, and scales are taken from ``max(eye distance, eye-mouth distance)``, which stays
large on profile faces (their projected eye distance shrinks, the eye-mouth distance does not) and on faces
pitched down (the other way round). Each test has one reason (``stats.REJECT_REASONS``); thresholds hold every
labelled face of tests/data/detect_labels.jsonl with a margin (see /work/notes/detect_results.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LayoutLimits:
    """Bounds of a face's 5-point layout. ``scale`` below is ``max(eye distance, eye-mouth distance)``."""

    min_eye_distance: float = 3.0  # pixels: eyes closer than this are a degenerate box (GFPGAN's filter uses 5)
    box_margin: float = 0.35  # landmarks may lie this fraction of the box side outside the box
    scale_range: tuple[float, float] = (0.12, 1.1)  # scale / box side
    swap_tolerance: float = 0.2  # the image-left eye may sit this much (x eye-mouth distance) on the face's right
    frontal_ratio: float = 0.5  # eye distance >= this x eye-mouth distance: the eye line is well defined
    mouth_below: float = 0.1  # frontal faces: mouth midpoint at least this x eye distance below the eye line
    nose_along: tuple[float, float] = (-0.4, 1.4)  # nose position along eyes -> mouth (0 = eye line, 1 = mouth)
    nose_across: float = 1.0  # nose at most this x scale to either side of the eyes -> mouth axis


def layout_reason(box: np.ndarray, lm5: np.ndarray, limits: LayoutLimits = LayoutLimits()) -> str | None:
    """``None`` when ``lm5`` ``(5, 2)`` (``LANDMARK_NAMES`` order, pixels) is laid out like a face inside ``box``
    ``(4,)`` x1, y1, x2, y2; else the first failed test's reason."""
    lm = np.asarray(lm5, np.float64).reshape(5, 2)
    b = np.asarray(box, np.float64).reshape(4)
    le, re, nose, lmo, rmo = lm
    eyes, mouth = (le + re) / 2, (lmo + rmo) / 2
    e = re - le
    v = mouth - eyes
    iod, hv = float(np.hypot(*e)), float(np.hypot(*v))
    side = max(float(b[2] - b[0]), float(b[3] - b[1]), 1e-6)
    if iod < limits.min_eye_distance:
        return "eye_distance_floor"
    m = limits.box_margin * side
    if (lm[:, 0] < b[0] - m).any() or (lm[:, 0] > b[2] + m).any() or (lm[:, 1] < b[1] - m).any() or (lm[:, 1] > b[3] + m).any():
        return "landmarks_outside_box"
    scale = max(iod, hv)
    lo, hi = limits.scale_range
    if not lo * side <= scale <= hi * side:
        return "landmark_scale"
    if hv < 1e-6:
        return "mouth_above_eyes"
    down = v / hv
    right = np.array([down[1], -down[0]])  # the face's right-hand side as seen in the image (image +x when upright)
    if iod >= limits.frontal_ratio * hv:
        # A well-defined eye line: the mouth must lie on its lower side (image-left eye to the left). A mirrored
        # layout (eyes swapped) fails here too: it is the same layout turned upside down.
        normal = np.array([-e[1], e[0]]) / iod  # perpendicular to the eye line, towards the mouth when upright
        if float(v @ normal) < limits.mouth_below * iod:
            return "mouth_above_eyes"
    elif float(e @ right) < -limits.swap_tolerance * hv:
        # Near profile the eye line is too short to orient: only a clear left/right reversal is rejected.
        return "eyes_swapped"
    n = nose - eyes
    along = float(n @ v) / (hv * hv)
    across = abs(float(n @ right))
    a0, a1 = limits.nose_along
    if not a0 <= along <= a1 or across > limits.nose_across * scale:
        return "nose_outside"
    return None


# 68-point (iBUG/300-W, 3DDFA) indices: the subject's right eye (image left) is 36-41, the left eye 42-47,
# nose tip 30, mouth corners 48 (image left) and 54.
_EYE_L, _EYE_R, _NOSE, _MOUTH_L, _MOUTH_R = slice(36, 42), slice(42, 48), 30, 48, 54


def five_from_68(lm68: np.ndarray) -> np.ndarray:
    """``(68, 2)`` landmarks -> ``(5, 2)`` in ``LANDMARK_NAMES`` order (eye centres, nose tip, mouth corners)."""
    p = np.asarray(lm68, np.float64).reshape(68, 2)
    return np.stack([p[_EYE_L].mean(0), p[_EYE_R].mean(0), p[_NOSE], p[_MOUTH_L], p[_MOUTH_R]])


def landmarks_agree(lm5: np.ndarray, prior_lm68: np.ndarray, tolerance: float = 0.25) -> tuple[bool, float]:
    """Does the detector's 5-point layout agree with the 3D prior's projected 68 landmarks of the same face?

    ``lm5`` ``(5, 2)`` and ``prior_lm68`` ``(68, 2)`` are in the same (image) pixel coordinates. The score is
    the mean distance between the detector's points and the 5 points taken from the 68 (``five_from_68``),
    divided by ``max(eye distance, eye-mouth distance)`` of the latter (profile-safe). Returns
    ``(score <= tolerance, score)``; a non-finite input gives ``(False, inf)``.

    The 3D prior fits a whole face; a box on a face part (an eye, a chin) or on a non-face gives a fit whose
    projected landmarks fall elsewhere, so disagreement flags a false detection the 2D check cannot see.
    """
    a = np.asarray(lm5, np.float64).reshape(5, 2)
    p5 = five_from_68(prior_lm68)
    if not (np.isfinite(a).all() and np.isfinite(p5).all()):
        return False, float("inf")
    eyes, mouth = (p5[0] + p5[1]) / 2, (p5[3] + p5[4]) / 2
    scale = max(float(np.hypot(*(p5[1] - p5[0]))), float(np.hypot(*(mouth - eyes))), 1e-6)
    score = float(np.mean(np.hypot(*(a - p5).T)) / scale)
    return score <= tolerance, score

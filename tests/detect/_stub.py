"""A raw detector that returns given candidates, for testing the face detector's merging and checks."""

from __future__ import annotations

import numpy as np

from facerest_cli.align.templates import FFHQ_512
from facerest_cli.detect.base import Candidates, RawSpec, candidates_to_detections

# The template's face box (x1, y1, x2, y2) in 512-crop pixels: around the 5 points, as detectors draw it.
_TEMPLATE_BOX = np.array([150.0, 150.0, 362.0, 420.0])


def face(cx: float, cy: float, size: float, roll_deg: float = 0.0, score: float = 0.9):
    """(box, score, landmarks) of an upright-template face of longer box side ``size`` centred at (cx, cy)."""
    s = size / 270.0
    c0 = (_TEMPLATE_BOX[:2] + _TEMPLATE_BOX[2:]) / 2
    a = np.radians(roll_deg)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    lm = (FFHQ_512 - c0) @ r.T * s + [cx, cy]
    half = np.array([106.0, 135.0]) * s
    box = np.array([cx - half[0], cy - half[1], cx + half[0], cy + half[1]])
    return box, score, lm


class StubRaw:
    """Returns ``cands`` (list of (box, score, landmarks) in image pixels) from every pass; one pass per image."""

    def __init__(self, cands, name: str = "stub", non_finite: int = 0):
        self.name = name
        self.spec = RawSpec(face_min=8.0, face_max=100_000.0)
        self.cands = cands
        self.non_finite = non_finite
        self.calls = 0

    def candidates(self, bgr: np.ndarray) -> Candidates:
        self.calls += 1
        if not self.cands:
            return Candidates.empty(self.non_finite)
        return Candidates(
            np.array([c[0] for c in self.cands], np.float32),
            np.array([c[1] for c in self.cands], np.float32),
            np.array([c[2] for c in self.cands], np.float32).reshape(-1, 5, 2),
            self.non_finite,
        )

    def detect(self, bgr):
        return candidates_to_detections(self.candidates(bgr))

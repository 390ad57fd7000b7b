"""Score calibration across networks, and the default thresholds.

Networks score on different scales (the RetinaFace 1MB release gives 0.9 to many non-faces; SCRFD gives real faces
0.5-0.9), so their raw scores cannot be compared or combined. ``calibrate`` maps a network's score to the
probability that the candidate is a face: a logistic fit ``sigmoid(a * logit(score) + b)`` of "matches a labelled
face" against the score of every detection the network makes alone (threshold 0, all scale-aware passes merged),
over every photo and variant (x1, mirror, x0.5, x0.25, x2, x3) of tests/data/detect_labels.jsonl, with an L2
penalty of 1 on (a, b) so the curve stays smooth where faces and non-faces barely overlap (fit and numbers:
/work/notes/detect_results.md). A network without a fit is mapped with slope 4 (the fitted ones: 3.7-4.4)
centred on its default threshold.
"""

from __future__ import annotations

import math
from typing import Sequence

# entry name -> (a, b) of sigmoid(a * logit(score) + b); fitted on 1,059 / 946 / 1,664 detections.
CALIBRATION: dict[str, tuple[float, float]] = {
    "yunet": (3.679, -2.995),
    "scrfd-500m": (4.390, -0.615),
    "retinaface-mnet-1mb": (1.977, -5.734),
}
_DEFAULT_SLOPE = 4.0

# Default --det-threshold. A single network: on its own score, the threshold with the fewest false and missed
# faces over the labelled set and its variants (906 faces >= 16 px): yunet 0.7 (1 false, 1 missed), scrfd-500m
# 0.65 (1, 4), retinaface-mnet-1mb 0.95 (7, 8). Not measured (weights not in ../shared): facexlib's RetinaFace
# releases (0.9; the official GFPGAN pipeline uses 0.97 at a single scale) and scrfd-10g (insightface's 0.5).
# auto: on the fused probability, 0.5 ("more likely a face than not": 4 false, 1 missed on the same set).
DEFAULT_THRESHOLDS: dict[str, float] = {
    "yunet": 0.7,
    "scrfd-500m": 0.65,
    "scrfd-10g": 0.5,
    "retinaface-mnet": 0.9,
    "retinaface-mnet-1mb": 0.95,
    "retinaface-r50": 0.9,
    "auto": 0.5,
}

# Mean landmark error (over the 5 points, / the labelled eye distance) of each network's matched faces on the
# labelled set, every variant. Fused landmarks weight each network by 1 / error^2 (inverse variance).
LANDMARK_ERROR: dict[str, float] = {
    "yunet": 0.091,
    "scrfd-500m": 0.057,
    "retinaface-mnet-1mb": 0.071,
}


def landmark_weight(entry: str) -> float:
    """Relative weight of network ``entry``'s landmarks when candidates are fused (1 for unmeasured networks at
    the typical error 0.07)."""
    return (0.07 / LANDMARK_ERROR.get(entry, 0.07)) ** 2


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def calibrate(entry: str, score: float) -> float:
    """The probability that a candidate of network ``entry`` with raw ``score`` is a face."""
    a, b = CALIBRATION.get(entry) or (_DEFAULT_SLOPE, -_DEFAULT_SLOPE * _logit(DEFAULT_THRESHOLDS.get(entry, 0.5)))
    return 1.0 / (1.0 + math.exp(-(a * _logit(float(score)) + b)))


def fuse_scores(probs: Sequence[float], n_networks: int) -> float:
    """A face's score from the calibrated probabilities of the networks that found it (one each, at most
    ``n_networks``): the probability that at least one of them is right (noisy-OR), so a face one network misses
    keeps the others' evidence, and two networks agreeing count more than one."""
    q = 1.0
    for p in probs:
        q *= 1.0 - min(max(float(p), 0.0), 1.0)
    return 1.0 - q


def default_threshold(entries: Sequence[str]) -> float:
    """The default threshold for a detector running ``entries`` (several: the fused ``auto`` threshold)."""
    if len(entries) > 1:
        return DEFAULT_THRESHOLDS["auto"]
    return DEFAULT_THRESHOLDS.get(entries[0], 0.5)

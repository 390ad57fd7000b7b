"""The face detector's merging: parts of a larger face, duplicates, non-finite candidates (issue 12)."""

from __future__ import annotations

import numpy as np

from facerest_cli.config import DetectConfig
from facerest_cli.detect.face_detector import FaceDetector
from tests.detect._stub import StubRaw, face

IMG = np.zeros((800, 1000, 3), np.uint8)


def _run(cands, **kw):
    return FaceDetector([StubRaw(cands, **kw)], DetectConfig(detector="stub")).run(IMG)


def test_a_face_inside_a_larger_face_is_a_part():
    big = face(400, 400, 500, score=0.95)
    eye = face(330, 330, 110, score=0.8)  # a face-like layout on the big face's eye: what detectors find at full res
    res = _run([big, eye])
    assert len(res.detections) == 1 and res.detections[0].size == np.float32(500)
    assert res.stats.rejected == {"part_of_larger_face": 1}


def test_a_small_face_beside_a_large_one_is_kept():
    res = _run([face(400, 400, 500), face(850, 300, 110)])
    assert len(res.detections) == 2 and res.stats.rejected == {}


def test_a_part_of_an_implausible_large_box_is_kept():
    """The larger box must itself be a face: a large box with a broken layout does not swallow a face."""
    big_box, s, big_lm = face(400, 400, 500)
    res = _run([(big_box, s, big_lm[[1, 0, 2, 4, 3]]), face(330, 330, 110)])
    assert len(res.detections) == 1 and res.detections[0].size < 200
    assert res.stats.rejected == {"mouth_above_eyes": 1}


def test_candidates_of_one_face_are_fused_once():
    a = face(400, 400, 200, score=0.9)
    b = face(404, 398, 206, score=0.7)
    res = _run([a, b])
    assert len(res.detections) == 1 and res.stats.merged == 1
    # weighted by score: 0.9 / 1.6 of the way at a, 0.7 / 1.6 at b
    np.testing.assert_allclose(res.detections[0].box, (a[0] * 0.9 + b[0] * 0.7) / 1.6, rtol=1e-5)


def test_non_finite_candidates_are_dropped_and_counted():
    nan_face = face(800, 300, 150)
    nan_face = (nan_face[0] * np.array([1, np.nan, 1, 1]), 0.99, nan_face[2])
    raw = StubRaw([face(300, 300, 150), nan_face])
    from facerest_cli.detect.base import drop_non_finite

    raw.candidates = (lambda f: (lambda bgr: drop_non_finite(f(bgr))))(raw.candidates)
    res = FaceDetector([raw], DetectConfig(detector="stub")).run(IMG)
    assert len(res.detections) == 1 and res.stats.rejected == {"non_finite": 1}


def test_below_threshold_is_counted():
    res = FaceDetector([StubRaw([face(300, 300, 150, score=0.3), face(700, 300, 150, score=0.9)])],
                       DetectConfig(detector="stub", score_threshold=0.5)).run(IMG)
    assert len(res.detections) == 1 and res.stats.rejected == {"low_score": 1}

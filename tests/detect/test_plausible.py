"""The 5-point layout check and the agreement with a 3D prior's 68 landmarks (issue 12, item 2)."""

from __future__ import annotations

import numpy as np
import pytest

from facerest_cli.config import DetectConfig
from facerest_cli.detect.face_detector import FaceDetector
from facerest_cli.detect.plausible import LayoutLimits, five_from_68, landmarks_agree, layout_reason
from tests.detect._stub import StubRaw, face


@pytest.mark.parametrize("roll", [0, 25, -40, 90, -90, 150])
def test_a_face_layout_passes_at_any_roll(roll):
    box, _, lm = face(300, 300, 200, roll_deg=roll)
    # a rolled face's axis-aligned box grows: take the landmarks' own extent plus the template margin
    assert layout_reason(box if roll == 0 else _box_around(lm, 200), lm) is None


def _box_around(lm, size):
    c = lm.mean(0)
    return np.array([c[0] - size / 2, c[1] - size / 2, c[0] + size / 2, c[1] + size / 2])


def test_profile_and_pitched_faces_pass():
    # A profile face as detectors place it (measured on a deepface profile photo): the far eye next to the near
    # one, the nose sticking out past both, mouth corners close together.
    box = np.array([100.0, 100.0, 260.0, 300.0])
    profile = np.array([[150.0, 180.0], [172.0, 181.0], [128.0, 220.0], [150.0, 250.0], [166.0, 251.0]])
    assert layout_reason(box, profile) is None
    # pitched down: the eye-mouth distance shrinks, the eye distance does not
    pitched = np.array([[140.0, 200.0], [220.0, 200.0], [180.0, 225.0], [150.0, 240.0], [210.0, 240.0]])
    assert layout_reason(box, pitched) is None


def test_each_implausible_layout_is_rejected_with_its_reason():
    box, _, lm = face(300, 300, 200)
    flipped = lm.copy()
    flipped[:, 1] = 600 - flipped[:, 1]  # upside down, eyes still in left-right order: mouth above the eyes
    assert layout_reason(box, flipped) == "mouth_above_eyes"
    swapped = lm[[1, 0, 2, 4, 3]]  # a mirrored layout is an upside-down one: the mouth is above the eye line
    assert layout_reason(box, swapped) == "mouth_above_eyes"
    profile = np.array([[172.0, 180.0], [150.0, 181.0], [128.0, 220.0], [150.0, 250.0], [166.0, 251.0]])
    assert layout_reason(np.array([100.0, 100.0, 260.0, 300.0]), profile) == "eyes_swapped"  # near profile, reversed
    nose = lm.copy()
    nose[2, 1] += 1.0 * (lm[3, 1] - lm[0, 1])  # nose below the mouth (still inside the box)
    assert layout_reason(box, nose) == "nose_outside"
    tiny = np.repeat(lm.mean(0, keepdims=True), 5, 0) + np.arange(10).reshape(5, 2) * 0.1
    assert layout_reason(box, tiny) == "eye_distance_floor"
    outside = lm + [400, 0]
    assert layout_reason(box, outside) == "landmarks_outside_box"
    small = (lm - lm.mean(0)) * 0.2 + lm.mean(0)  # a 200-px box around landmarks of a 40-px face
    assert layout_reason(box, small, LayoutLimits(min_eye_distance=1.0)) == "landmark_scale"


def test_rejections_are_counted_and_keep_all_keeps_them():
    good = face(150, 200, 120)
    bad_box, s, bad_lm = face(450, 200, 120)
    bad = (bad_box, s, bad_lm[[1, 0, 2, 4, 3]])  # mirrored layout
    img = np.zeros((400, 600, 3), np.uint8)
    det = FaceDetector([StubRaw([good, bad])], DetectConfig(detector="stub"))
    res = det.run(img)
    assert len(res.detections) == 1 and res.stats.rejected == {"mouth_above_eyes": 1}
    assert det.stats().to_dict()["rejected"] == {"mouth_above_eyes": 1}
    keep = FaceDetector([StubRaw([good, bad])], DetectConfig(detector="stub", keep_all=True)).run(img)
    assert len(keep.detections) == 2 and keep.stats.kept_implausible == 1 and keep.stats.rejected == {}


def _lm68_from_5(lm5: np.ndarray) -> np.ndarray:
    """68 points whose eye centres, nose tip and mouth corners are ``lm5`` (the others somewhere plausible)."""
    p = np.zeros((68, 2))
    p[:] = lm5.mean(0)
    for k, (dx, dy) in enumerate([(-4, 0), (-2, -2), (2, -2), (4, 0), (2, 2), (-2, 2)]):
        p[36 + k] = lm5[0] + (dx, dy)
        p[42 + k] = lm5[1] + (dx, dy)
    p[30], p[48], p[54] = lm5[2], lm5[3], lm5[4]
    return p


def test_landmarks_agree_with_the_prior():
    _, _, lm = face(300, 300, 200)
    p68 = _lm68_from_5(lm)
    np.testing.assert_allclose(five_from_68(p68), lm, atol=1e-9)
    ok, score = landmarks_agree(lm, p68)
    assert ok and score == pytest.approx(0.0, abs=1e-9)
    iod = np.linalg.norm(lm[1] - lm[0])
    ok, score = landmarks_agree(lm + [0.5 * iod, 0], p68)  # every point half an eye distance off
    assert not ok and score == pytest.approx(0.5 * iod / max(iod, np.linalg.norm((lm[3] + lm[4]) / 2 - (lm[0] + lm[1]) / 2)))
    assert landmarks_agree(lm, np.full((68, 2), np.nan)) == (False, float("inf"))

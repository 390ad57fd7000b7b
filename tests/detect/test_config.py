"""DetectConfig: the detection options' defaults and checks, and FacePreparer's detection entry point (issue 12)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facerest_cli.config import DetectConfig, RunConfig
from facerest_cli.errors import UsageError
from tests.detect._stub import StubRaw, face


def test_defaults_and_checks():
    cfg = DetectConfig()
    assert (cfg.detector, cfg.score_threshold, cfg.max_side, cfg.keep_all, cfg.align_fit) == ("auto", None, 0, False, "lstsq")
    for bad in ({"score_threshold": 1.5}, {"max_side": -1}, {"align_fit": "ransac"}):
        with pytest.raises(UsageError):
            DetectConfig(**bad)


def test_default_thresholds_follow_the_detector():
    from facerest_cli.detect.face_detector import FaceDetector

    assert FaceDetector([StubRaw([], name="yunet")], DetectConfig(detector="yunet")).threshold == 0.7
    assert FaceDetector([StubRaw([], name="yunet"), StubRaw([], name="scrfd-500m")], DetectConfig()).threshold == 0.5
    assert FaceDetector([StubRaw([], name="yunet")], DetectConfig(detector="yunet", score_threshold=0.2)).threshold == 0.2


def test_face_preparer_detects_selects_and_counts():
    from facerest_cli.align.faces import FacePreparer
    from facerest_cli.detect.face_detector import FaceDetector

    cfg = DetectConfig(detector="stub", faces="largest")
    det = FaceDetector([StubRaw([face(150, 200, 120), face(450, 200, 200), face(330, 130, 60, score=0.2)])], cfg)
    prep = FacePreparer(RunConfig(inputs=(Path("."),), detect=cfg), det, 512, "ffhq512", "none")
    dets = prep.detect(np.zeros((400, 600, 3), np.uint8))
    assert len(dets) == 1 and dets[0].size == np.float32(200)
    st = prep.detect_stats()
    assert st.to_dict()["faces"] == 2 and st.rejected == {"low_score": 1}  # --faces selects after detection
    assert prep.detector_name == "stub"
    crop = prep.align(np.zeros((400, 600, 3), np.uint8), dets)[0]
    assert crop.crop.shape == (512, 512, 3)

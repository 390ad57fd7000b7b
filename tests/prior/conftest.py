"""Fixtures for the 3D prior tests: the weights store over ../shared/weights, the mb05 regressor, YuNet faces."""

from __future__ import annotations

import pytest

from tests.conftest import IMAGES, shared_file


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    import os

    from facerest_cli.weights.cache import WeightsConfig, WeightsStore
    from tests.conftest import WEIGHTS

    home = tmp_path_factory.mktemp("prior_home")
    cfg = WeightsConfig(home=home / "weights", extra_dirs=(WEIGHTS,), offline=True)
    assert os.path.isdir(WEIGHTS)
    return WeightsStore(cfg)


@pytest.fixture(scope="module")
def tddfa(store):
    from facerest_cli.prior.tddfa import Tddfa

    return Tddfa.load(store, "3ddfa-mb05")


@pytest.fixture(scope="module")
def dense(store, tddfa):
    from facerest_cli.prior.morphable import DenseBfm

    return DenseBfm.load(store, tddfa.sparse)


def _image_files():
    files = sorted((IMAGES / "deepface").glob("*.jpg")) + sorted((IMAGES / "gfpgan" / "whole_imgs").iterdir())
    assert len(files) >= 60, "../shared/images/deepface and gfpgan/whole_imgs are incomplete"
    return files


@pytest.fixture(scope="module")
def detected_faces(store):
    """Every face YuNet finds (default settings) in ../shared/images/deepface and gfpgan/whole_imgs."""
    from facerest_cli.config import DetectConfig
    from facerest_cli.detect.base import detect_bounded, select_faces, to_detection_bgr
    from facerest_cli.detect.registry import build_detector
    from facerest_cli.io.decode import decode_image

    cfg = DetectConfig()
    det = build_detector(cfg, store, "cpu")
    out = []
    for f in _image_files():
        img = decode_image(f)
        bgr = to_detection_bgr(img.pixels)
        dets = select_faces(detect_bounded(det, bgr, cfg.max_side), bgr.shape[:2], cfg)
        out.append((f, img.pixels, dets))
    return out


def image(*parts: str):
    from facerest_cli.io.decode import decode_image

    return decode_image(shared_file("images", *parts)).pixels


def module_env(tmp_path_factory):
    """For module-scoped fixtures, which run before conftest's per-test environment: the same isolation."""
    from tests.conftest import WEIGHTS

    mp = pytest.MonkeyPatch()
    mp.setenv("FACEREST_HOME", str(tmp_path_factory.mktemp("facerest_home")))
    mp.setenv("FACEREST_WEIGHTS_DIR", str(WEIGHTS))
    mp.delenv("FACEREST_OFFLINE", raising=False)
    return mp

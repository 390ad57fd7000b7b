"""ArcFace alignment: input faces from the photo, restored faces from the crop through its matrix."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.conftest import shared_file


@pytest.fixture(scope="module")
def t1_faces():
    """t1.jpg with its YuNet detections and their FFHQ-512 crops (as the pipeline makes them)."""
    from facerest_cli.align.templates import template_points
    from facerest_cli.align.warp import estimate_similarity, warp_to_crop
    from facerest_cli.config import DetectConfig
    from facerest_cli.detect.base import detect_bounded
    from facerest_cli.detect.registry import build_detector
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    img = cv2.imread(str(shared_file("images", "insightface", "t1.jpg")))
    det = build_detector(DetectConfig(), WeightsStore(WeightsConfig.from_env(offline=True)))
    faces = []
    for d in detect_bounded(det, img, 2048):
        m = estimate_similarity(d.landmarks, template_points("ffhq512", 512))
        faces.append((d, m, warp_to_crop(img, m, 512)))
    assert len(faces) == 6
    return img, faces


def test_landmarks_land_on_the_arcface_template(t1_faces):
    from facerest_cli.align.templates import ARCFACE_112
    from facerest_cli.identity.align import arcface_matrix, to_crop_coords

    img, faces = t1_faces
    for d, m, _ in faces:
        a = arcface_matrix(d.landmarks)
        # The least-squares similarity, solved independently: [a -b tx; b a ty] from the 10 linear equations.
        x, y = d.landmarks[:, 0].astype(np.float64), d.landmarks[:, 1].astype(np.float64)
        rows = np.concatenate([np.stack([x, -y, np.ones(5), np.zeros(5)], 1), np.stack([y, x, np.zeros(5), np.ones(5)], 1)])
        p, b_, tx, ty = np.linalg.lstsq(rows, np.concatenate([ARCFACE_112[:, 0], ARCFACE_112[:, 1]]), rcond=None)[0]
        np.testing.assert_allclose(a, [[p, -b_, tx], [b_, p, ty]], atol=1e-6)
        # Through the crop: the same five points, whichever way they travel.
        in_crop = to_crop_coords(d.landmarks, m)
        b = arcface_matrix(in_crop)
        np.testing.assert_allclose(to_crop_coords(in_crop, b), to_crop_coords(d.landmarks, a), atol=1e-6)


def test_restored_path_reproduces_the_input_path_on_a_passthrough_crop(t1_faces):
    from facerest_cli.identity.align import align_input, align_restored

    img, faces = t1_faces
    for d, m, crop in faces:
        a = align_input(img, d.landmarks)
        b = align_restored(crop.astype(np.float32) / 255.0, d.landmarks, m)
        assert a.shape == b.shape == (112, 112, 3) and a.dtype == b.dtype == np.float32
        assert 0.0 <= b.min() and b.max() <= 1.0
        # Two resamplings against one: the same picture up to interpolation (measured mean |diff| ~0.01).
        assert np.abs(a - b).mean() < 0.02, np.abs(a - b).mean()


def test_gray_and_16bit_photos_align_like_8bit_colour(t1_faces):
    from facerest_cli.identity.align import align_input

    img, faces = t1_faces
    d = faces[0][0]
    ref = align_input(img, d.landmarks)
    img16 = img.astype(np.uint16) * 257
    # The 8-bit warp rounds to whole levels, the 16-bit one does not: half a level apart at most.
    np.testing.assert_allclose(align_input(img16, d.landmarks), ref, atol=0.51 / 255)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[:, :, None]
    g = align_input(gray, d.landmarks)
    assert g.shape == (112, 112, 3) and np.array_equal(g[..., 0], g[..., 2])
    bgra = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(align_input(bgra, d.landmarks), ref)

"""align/warp.py against OpenCV and against independent solutions: similarity fits (least squares, LMEDS) and
the image -> crop warp (issue 12, item 3)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from facerest_cli.align.templates import FFHQ_512
from facerest_cli.align.warp import estimate_similarity, estimate_similarity_lmeds, fit_similarity, warp_to_crop
from tests.conftest import shared_file


def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array([[scale * math.cos(a), -scale * math.sin(a), tx], [scale * math.sin(a), scale * math.cos(a), ty]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def _face_landmarks(seed: int = 0, noise: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """A face's 5 image landmarks (the template seen through a known similarity, plus detector-like noise) and
    the true image -> template matrix."""
    rng = np.random.default_rng(seed)
    img_to_tmpl = _similarity(12.0, 0.7, 40.0, -25.0)
    tmpl_to_img = np.vstack([img_to_tmpl, [0, 0, 1]])
    lm = _apply(np.linalg.inv(tmpl_to_img)[:2], FFHQ_512) + rng.normal(0, noise, (5, 2))
    return lm, img_to_tmpl


def _lstsq_reference(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The similarity [[a, -b, tx], [b, a, ty]] as a plain linear least-squares problem (independent of Umeyama)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def _crop_shift(m1: np.ndarray, m2: np.ndarray, size: int = 512) -> float:
    """Mean distance (crop pixels) a 5x5 grid of crop points moves between two image -> crop matrices."""
    g = np.array([[x, y] for x in np.linspace(0, size - 1, 5) for y in np.linspace(0, size - 1, 5)])
    img = _apply(np.linalg.inv(np.vstack([m1, [0, 0, 1]]))[:2], g)
    return float(np.mean(np.linalg.norm(_apply(m2, img) - g, axis=1)))


def test_least_squares_matches_an_independent_linear_solution():
    lm, _ = _face_landmarks(seed=3, noise=4.0)
    np.testing.assert_allclose(estimate_similarity(lm, FFHQ_512), _lstsq_reference(lm, FFHQ_512), atol=1e-9)


def test_exact_layout_both_fits_and_opencv_recover_the_transform():
    lm, truth = _face_landmarks(noise=0.0)
    for m in (estimate_similarity(lm, FFHQ_512), estimate_similarity_lmeds(lm, FFHQ_512)):
        np.testing.assert_allclose(m, truth, atol=1e-9)
    cv, _ = cv2.estimateAffinePartial2D(lm.astype(np.float32), FFHQ_512.astype(np.float32), method=cv2.LMEDS)
    np.testing.assert_allclose(cv, truth, atol=1e-3)


def test_lmeds_equals_least_squares_on_a_consistent_noisy_layout():
    lm, _ = _face_landmarks(seed=1, noise=1.5)
    np.testing.assert_allclose(estimate_similarity_lmeds(lm, FFHQ_512), estimate_similarity(lm, FFHQ_512), atol=1e-12)


@pytest.mark.parametrize("point", [2, 0, 3])  # nose, an eye, a mouth corner
def test_one_displaced_landmark_lmeds_ignores_it_least_squares_shifts_the_crop(point):
    lm, truth = _face_landmarks(seed=2, noise=0.5)
    iod = float(np.linalg.norm(lm[1] - lm[0]))
    bad = lm.copy()
    bad[point] += np.array([0.45, 0.3]) * iod  # one landmark half an eye distance off (occlusion, profile)
    others = [i for i in range(5) if i != point]
    lmeds = estimate_similarity_lmeds(bad, FFHQ_512)
    # the outlier is dropped: the fit is the least-squares fit of the four good points
    np.testing.assert_allclose(lmeds, estimate_similarity(bad[others], FFHQ_512[others]), atol=1e-9)
    assert _crop_shift(truth, lmeds) < 2.0
    assert _crop_shift(truth, estimate_similarity(bad, FFHQ_512)) > 10.0  # the 5-point least squares moves the crop
    # OpenCV's LMEDS (random pair sampling + Levenberg-Marquardt refinement) reaches the same matrix
    cv, inl = cv2.estimateAffinePartial2D(bad.astype(np.float32), FFHQ_512.astype(np.float32), method=cv2.LMEDS)
    assert inl.ravel().tolist() == [int(i != point) for i in range(5)]
    assert _crop_shift(cv, lmeds) < 0.05


def test_lmeds_is_deterministic_and_fit_similarity_dispatches():
    lm, _ = _face_landmarks(seed=5, noise=3.0)
    lm[4] += 40
    runs = [estimate_similarity_lmeds(lm, FFHQ_512) for _ in range(3)]
    assert all(np.array_equal(runs[0], r) for r in runs)
    assert np.array_equal(fit_similarity(lm, FFHQ_512, "lmeds"), runs[0])
    assert np.array_equal(fit_similarity(lm, FFHQ_512, "lstsq"), estimate_similarity(lm, FFHQ_512))
    with pytest.raises(ValueError):
        fit_similarity(lm, FFHQ_512, "ransac")


def test_warp_to_crop_is_cv2_warpaffine_at_moderate_scale():
    img = cv2.imread(str(shared_file("images", "insightface", "t1.jpg")))
    m = _similarity(-8.0, 0.9, -300.0, -120.0)
    ours = warp_to_crop(img, m, 512)
    ref = cv2.warpAffine(img, m, (512, 512), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(135, 133, 132))
    assert np.array_equal(ours, ref)


def test_warp_to_crop_downscaling_matches_area_averaging():
    """A 5x shrink: bilinear alone aliases; ours pre-shrinks by area and must match OpenCV's INTER_AREA resize."""
    img = np.ascontiguousarray(cv2.imread(str(shared_file("images", "gpen", "ffhq-10", "00000.png")))[:1000, :1000])
    s = 0.2
    # image pixel p -> crop pixel (p + 0.5) * s - 0.5: the pixel-centre convention of cv2.resize
    m = np.array([[s, 0, 0.5 * s - 0.5], [0, s, 0.5 * s - 0.5]])
    ours = warp_to_crop(img, m, 200).astype(np.float64)
    ref = cv2.resize(img, (200, 200), interpolation=cv2.INTER_AREA).astype(np.float64)
    naive = cv2.warpAffine(img, m, (200, 200), flags=cv2.INTER_LINEAR).astype(np.float64)
    err, err_naive = np.abs(ours - ref)[2:-2, 2:-2].mean(), np.abs(naive - ref)[2:-2, 2:-2].mean()
    assert err < 2.0 and err < 0.6 * err_naive, (err, err_naive)  # measured: 0.98 vs 3.2 grey levels

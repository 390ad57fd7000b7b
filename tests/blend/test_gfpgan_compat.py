"""``--compat gfpgan`` (``blend.gfpgan_compat``) against the official GFPGANer.enhance pipeline golden
(../shared/checkpoint-formats/pipelines/gfpgan_pipeline.npz), every case: t1, Blake_Lively, 10045, 00, the square
mask (t1_noparse), upscale 2 (Blake_Lively_x2) and the eye-distance limit (10045_eyefilter).

Gate (the JSON's ``tolerance``): bit-exact with the same opencv-python 5.1.0 build and CPU dispatch; on any other
OpenCV build the recommended gate (matrices within 1e-3 crop px, crops <= 1 level on <= 0.2 % of pixels, output
identical outside the masks and <= 3 levels on <= 0.1 % of the pixels inside)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from tests.conftest import shared_file

CASES = ["t1", "Blake_Lively", "10045", "00", "t1_noparse", "Blake_Lively_x2", "10045_eyefilter"]
BASE = {"t1_noparse": "t1", "Blake_Lively_x2": "Blake_Lively", "10045_eyefilter": "10045"}


@pytest.fixture(scope="module")
def golden():
    return np.load(shared_file("checkpoint-formats", "pipelines", "gfpgan_pipeline.npz"))


@pytest.fixture(scope="module")
def spec():
    return json.loads(shared_file("checkpoint-formats", "pipelines", "gfpgan_pipeline.json").read_text())


def _same_opencv_as_golden(spec) -> bool:
    import cv2

    features = cv2.getCPUFeaturesLine().split()
    return cv2.__version__ == spec["environment"]["opencv"] and "*AVX512-SKX" in features


def restore_fn(crops: np.ndarray) -> np.ndarray:
    """The golden's documented deterministic restorer (``substitutions.b_restorer.restore_fn``), per face index k:
    even k: 255 - crop; odd k: clip(((crop * 3) >> 1) - 40 + P), P[y, x, c] = ((7x + 13y + 5c) % 17) - 8."""
    y, x, c = np.meshgrid(np.arange(512), np.arange(512), np.arange(3), indexing="ij")
    p = ((7 * x + 13 * y + 5 * c) % 17) - 8
    out = []
    for k, crop in enumerate(crops):
        if k % 2 == 0:
            out.append(255 - crop)
        else:
            out.append(np.clip(((crop.astype(np.int32) * 3) >> 1) - 40 + p, 0, 255).astype(np.uint8))
    return np.stack(out)


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _crop_px_displacement(m: np.ndarray, ref: np.ndarray) -> float:
    """max over the crop square's corners and centre of |(M - M_ref) @ [p, 1]|, p = the golden's inverse map."""
    import cv2

    inv = cv2.invertAffineTransform(ref)
    pts = np.array([[0, 0], [511, 0], [0, 511], [511, 511], [255.5, 255.5]])
    img_pts = pts @ inv[:, :2].T + inv[:, 2]
    d = (img_pts @ (m - ref)[:, :2].T) + (m - ref)[:, 2]
    return float(np.abs(d).max())


def test_restore_fn_is_the_goldens(spec):
    assert "k even: R = 255 - crop" in spec["substitutions"]["b_restorer"]["restore_fn"]
    assert spec["official_constants"]["parse_mask_use_parse_true"]["MASK_COLORMAP"] == list(
        __import__("facerest_cli.blend.gfpgan_compat", fromlist=["x"]).MASK_COLORMAP)


@pytest.mark.parametrize("case", CASES)
def test_compat_paste_matches_the_official_pipeline(case, golden, spec):
    import cv2

    from facerest_cli.blend.gfpgan_compat import gfpgan_paste, parse_mask_crop

    g = lambda k: golden[f"{case}/{k}"]  # noqa: E731
    img = cv2.imread(str(shared_file(golden[f"{BASE.get(case, case)}/input_path"].item().decode())), cv2.IMREAD_COLOR)
    assert _sha(img) == g("input__sha256").item().decode(), "the stored input differs from ../shared's photo"
    rows = g("given_rows")
    kept = g("kept_rows")
    use_parse, upscale = bool(g("use_parse")), int(g("upscale"))
    parse = [golden[f"{case}/face{k:02d}/parse"] for k in range(len(kept))] if use_parse else None
    res = gfpgan_paste(img, rows[:, 5:15].reshape(-1, 5, 2), restore_fn, upscale=upscale, use_parse=use_parse,
                       parse=parse)
    exact = _same_opencv_as_golden(spec)

    # eye-distance filter: identical distances and kept rows (10045_eyefilter: 4.99 dropped, exactly 5.0 kept)
    assert np.array_equal(res.eye_dist, g("eye_dist"))
    assert list(res.kept_rows) == kept.tolist()
    if case == "10045_eyefilter":
        assert 4 not in res.kept_rows and 5 in res.kept_rows

    for k, face in enumerate(res.faces):
        f = lambda n: golden[f"{case}/face{k:02d}/{n}"]  # noqa: E731
        assert np.array_equal(face.inliers, f("inliers"))
        crop_key = f"{case}/face{k:02d}/crop"
        ref_crop = golden[crop_key] if crop_key in golden.files else golden[f("crop_same_as").item().decode()]
        assert np.array_equal(face.restored, restore_fn(np.stack([face.crop] * (k + 1)))[k])
        if exact:
            assert np.array_equal(face.affine, f("affine")), (case, k)
            assert np.array_equal(face.inverse_affine, f("inverse_affine_used"))
            assert np.array_equal(face.crop, ref_crop)
            assert _sha(face.restored) == f("restored__sha256").item().decode()
        else:
            assert _crop_px_displacement(face.affine, f("affine")) <= 1e-3
            d = np.abs(face.crop.astype(int) - ref_crop)
            assert d.max() <= 1 and (d > 0).mean() <= 0.002
        if use_parse and f"{case}/face{k:02d}/mask_crop" in golden.files:
            assert np.abs(parse_mask_crop(f("parse")) - f("mask_crop")).max() <= 1e-12

    ref = (img.astype(np.int16) + g("output_minus_input")) if f"{case}/output_minus_input" in golden.files else g("output")
    assert res.output.shape == ref.shape and res.output.dtype == np.uint8
    if exact:
        assert _sha(res.output) == g("output__sha256").item().decode()
        assert np.array_equal(res.output, ref)
    else:
        d = np.abs(res.output.astype(int) - ref)
        assert d.max() <= 3 and (d.max(axis=2) > 0).mean() <= 1e-3


def test_upscale_background_is_lanczos_of_the_input(golden):
    """Blake_Lively_x2: every pixel outside the faces is cv2.resize(input, 2x, INTER_LANCZOS4)."""
    import cv2

    img = golden["Blake_Lively_x2/input"]
    bg = cv2.resize(img, (img.shape[1] * 2, img.shape[0] * 2), interpolation=cv2.INTER_LANCZOS4)
    assert _sha(bg) == golden["Blake_Lively_x2/background__sha256"].item().decode()


def test_parse_path_needs_a_parser():
    from facerest_cli.blend.gfpgan_compat import gfpgan_paste
    from facerest_cli.errors import UsageError

    img = np.zeros((64, 64, 3), np.uint8)
    lm = np.array([[[20, 25], [44, 25], [32, 35], [22, 45], [42, 45]]], np.float32)
    with pytest.raises(UsageError, match="parser"):
        gfpgan_paste(img, lm, restore_fn, use_parse=True)
    with pytest.raises(UsageError, match="8-bit"):
        gfpgan_paste(img.astype(np.uint16), lm, restore_fn, use_parse=False)
    # a face whose eyes are 4 px apart is skipped, the image comes back unchanged
    tiny = np.array([[[30, 30], [34, 30], [32, 32], [31, 34], [33, 34]]], np.float32)
    res = gfpgan_paste(img + 7, tiny, restore_fn, use_parse=False)
    assert res.kept_rows == () and np.array_equal(res.output, img + 7)

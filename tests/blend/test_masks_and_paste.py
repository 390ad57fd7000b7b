"""Paste-back masks, face-parsing masks through `facerest run`, and --color-fix (issue 15's test gaps)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import run_images, shared_file


def test_feather_mask_is_zero_at_the_border_one_inside_and_monotone():
    from facerest_cli.blend.mask import feather_mask

    m = feather_mask(512)
    assert m.shape == (512, 512) and m.dtype == np.float32
    inner, outer = round(0.02 * 512), round(0.12 * 512)
    assert (m[:inner] == 0).all() and (m[:, -inner:] == 0).all()  # the warp's padding never shows
    assert (m[outer + 1 : -outer - 1, outer + 1 : -outer - 1] == 1).all()
    row = m[256]
    assert (np.diff(row[:256]) >= 0).all() and (np.diff(row[256:]) <= 0).all()


def test_paste_keeps_unmasked_pixels_and_replaces_fully_masked_ones_exactly():
    """A crop pasted with an identity-scaled matrix: where the mask is 0 every pixel is the input's bit for bit,
    where it is 1 the pixel is the restored value (rounded); 16-bit frames keep their low bytes outside."""
    from facerest_cli.blend.paste import PasteItem, paste_faces

    rng = np.random.default_rng(0)
    for dtype, maxval in ((np.uint8, 255), (np.uint16, 65535)):
        frame = rng.integers(0, maxval + 1, (200, 300, 3)).astype(dtype)
        restored = rng.random((64, 64, 3)).astype(np.float32)
        mask = np.zeros((64, 64), np.float32)
        mask[16:48, 16:48] = 1.0
        m = np.array([[1.0, 0, -100], [0, 1.0, -50]])  # crop pixel (u, v) = image pixel (u + 100, v + 50)
        out = paste_faces(frame, [PasteItem(restored, m, mask)])
        changed = np.any(out != frame, axis=2)
        assert not changed[:50].any() and not changed[:, :100].any() and not changed[114:].any()
        inside = out[50 + 20 : 50 + 44, 100 + 20 : 100 + 44].astype(np.float64)
        want = np.rint(restored[20:44, 20:44] * maxval)
        assert np.abs(inside - want).max() <= 1  # bilinear at integer positions: exact up to rounding


def _parse_stage(name: str, tmp_path):
    """A ParsingMaskStage on a make_checkpoint network, through the loader `facerest run` uses."""
    from facerest_cli.blend.parsing import build_mask_stage
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore
    from tests.models.golden import write_official_checkpoint

    manifest = {"bisenet": "parsing_bisenet", "parsenet": "parsing_parsenet"}[name]
    store = WeightsStore(WeightsConfig.from_env())
    ckpt = write_official_checkpoint(manifest, tmp_path / store.registry.get(name).files[0].name)
    store.import_paths([ckpt], as_name=name, trust=True)
    return build_mask_stage(name, store, "cpu")


@pytest.mark.parametrize("name", ["bisenet", "parsenet"])
def test_parsing_mask_keeps_skin_and_drops_background_hair_and_neck_on_a_real_face(name, tmp_path):
    """The label map of a real face -- skin inside the 3DDFA face contour, hair above it, neck below, background
    elsewhere, in the parser's own class order -- becomes a mask that is ~1 on the skin and 0 elsewhere."""
    import cv2
    from importlib import import_module

    from facerest_cli.io.decode import decode_image
    from facerest_cli.prior.tddfa import Tddfa, roi_from_box, box_from_landmarks
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    stage = _parse_stage(name, tmp_path)
    names = import_module(f"facerest_cli.models.{name}").CLASS_NAMES
    crop = decode_image(shared_file("images", "gfpgan", "cropped_faces", "Adele_crop.png")).pixels
    from facerest_cli.align.templates import template_points

    tddfa = Tddfa.load(WeightsStore(WeightsConfig.from_env()), "3ddfa-mb05")
    (fit,) = tddfa.fit(crop, [roi_from_box(box_from_landmarks(template_points("ffhq512", 512)))])
    contour = fit.landmarks[:27, :2].astype(np.float32)  # jaw line and brows
    labels = np.full((512, 512), names.index("background"), np.int64)
    hull = cv2.convexHull(contour).astype(np.int32)
    top = int(contour[:, 1].min())
    labels[: max(top - 10, 0)] = names.index("hair")
    labels[int(contour[:17, 1].max()) + 10 :] = names.index("neck")
    face = np.zeros((512, 512), np.uint8)
    cv2.fillConvexPoly(face, hull, 1)
    labels[face == 1] = names.index("skin")
    (mask,) = stage.masks_from_labels(labels[None])
    skin = cv2.erode(face, np.ones((41, 41), np.uint8)) == 1  # away from the feathered edge
    rest = cv2.dilate(face, np.ones((41, 41), np.uint8)) == 0
    assert mask[skin].min() > 0.95
    assert mask[rest].max() < 0.05
    assert mask[0].max() == 0 and mask[:, -1].max() == 0


@pytest.mark.parametrize("name", ["bisenet", "parsenet"])
def test_parsing_mask_stage_runs_through_facerest_run(name, tmp_path):
    """--mask bisenet|parsenet with make_checkpoint weights: the run completes and each face's mask is what the
    stage computes from the network's own labels on the restored crop (normalisation from weights.toml)."""
    import torch

    from facerest_cli.types import AlignedFace, Detection, FaceRecord, FaceState, FrameRef

    stage = _parse_stage(name, tmp_path)
    crop = shared_file("images", "gfpgan", "cropped_faces", "Adele_crop.png")
    import cv2

    px = cv2.imread(str(crop))
    ref = FrameRef(px, str(crop), 0)
    f = FaceState(AlignedFace(0, Detection(np.zeros(4, np.float32), 1.0, np.zeros((5, 2), np.float32)), px, np.eye(2, 3)),
                  FaceRecord(str(crop), 0, [], 1.0, [], 1.0, "d", "r", 1.0, []), ref, 1.0, False,
                  restored=px.astype(np.float32) / 255)
    stage.after_restore([f])
    x = torch.from_numpy(px[:, :, ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    spec = stage.model.spec.input
    x = (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        labels = stage.model.net.parse(x).argmax(1)
    np.testing.assert_array_equal(f.mask, stage.masks_from_labels(labels)[0])
    assert 0 < f.mask.mean() < 1 or f.mask.max() == 0

    res = run_images([crop], tmp_path / "out", restorer_name="none", aligned=True, mask=name,
                     identity=__import__("facerest_cli.config", fromlist=["IdentityConfig"]).IdentityConfig(recognizer="none"),
                     prior=__import__("facerest_cli.config", fromlist=["PriorConfig"]).PriorConfig(prior="off"))
    assert res.exit_code == 0 and res.faces == 1
    assert res.stage_seconds.get(f"mask-{name}", 0) > 0


class _ColourCast:
    """A test restorer that adds a strong red cast (a restorer's typical colour shift on old photos)."""

    name = "cast"
    template = "ffhq512"
    needs_prior = False
    size = 512

    def __call__(self, faces, prior=None):
        out = faces.clone()
        out[:, 0] = (out[:, 0] * 1.3 + 0.1).clamp(0, 1)
        out[:, 2] = out[:, 2] * 0.8
        return out


def test_color_fix_moves_face_colour_statistics_back_to_the_input():
    from facerest_cli.config import IdentityConfig, PriorConfig

    import cv2
    import tempfile
    from pathlib import Path

    src = shared_file("images", "gfpgan", "cropped_faces", "Adele_crop.png")
    before = cv2.imread(str(src)).astype(np.float64)
    centre = (slice(160, 352), slice(160, 352))
    diffs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fix in (False, True):
            out = Path(tmp) / f"o{fix}"
            run_images([src], out, restorer=_ColourCast(), aligned=True, color_fix=fix, mask="feather",
                       identity=IdentityConfig(recognizer="none"), prior=PriorConfig(prior="off"))
            after = cv2.imread(str(out / src.name)).astype(np.float64)
            diffs[fix] = np.abs(after[centre].mean((0, 1)) - before[centre].mean((0, 1)))  # per-channel mean shift
            if fix:
                assert np.abs(after[centre].std((0, 1)) - before[centre].std((0, 1))).max() < 3.0
    assert diffs[False].max() > 20  # the cast is real
    assert diffs[True].max() < 2.0  # and colour-fix removes it

"""Whole-photo restoration through ``facerest run`` (issue 16): ``--bg-upsampler`` (streamed to TIFF/PNG, collected
for other formats), faces pasted at the output scale, ``--detail keep|restored`` recorded per face, ``--compat
gfpgan`` and the combinations refused up front.

Most runs use ``cheap-x2`` (``tests/blend/cheap_upsampler.py``), registered as a user's model: exact nearest x2, so
every background pixel of the output is known without the code under test. The real RRDBNet x2 (make_checkpoint
weights) runs once, end to end, on a small photo.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import REPO, read_jsonl, run_cli, run_images, shared_file

FAST = ("--recognizer", "none", "--prior", "off", "--quiet", "--offline")


def _fast() -> dict:
    from facerest_cli.config import IdentityConfig, PriorConfig

    return {"identity": IdentityConfig(recognizer="none"), "prior": PriorConfig(prior="off")}


@pytest.fixture
def cheap_x2(_isolated_home, tmp_path) -> str:
    """``cheap-x2`` registered in this test's $FACEREST_HOME (fragment + imported file, verified by sha256)."""
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore
    from tests.blend.cheap_upsampler import install

    ckpt = install(_isolated_home, tmp_path)
    store = WeightsStore(WeightsConfig.from_env())
    assert [(i.action, i.entry) for i in store.import_paths([ckpt])] == [("installed", "cheap-x2")]
    return "cheap-x2"


def _nearest(img: np.ndarray, n: int) -> np.ndarray:
    return img.repeat(n, axis=0).repeat(n, axis=1)


def _outside_faces(shape_hw, records, n: int, margin: int = 3) -> np.ndarray:
    """True where no face crop can reach on the ``n``x canvas: the crop square's corners mapped back with the
    reported matrices (numpy only; independent of the paste code), grown by ``margin`` pixels."""
    outside = np.ones(shape_hw, bool)
    for r in records:
        m = np.vstack([np.array(r["matrix"], np.float64), [0, 0, 1]])
        corners = np.array([[-0.5, -0.5, 1], [511.5, -0.5, 1], [-0.5, 511.5, 1], [511.5, 511.5, 1]])
        pts = (corners @ np.linalg.inv(m).T)[:, :2]
        pts = (pts + 0.5) * n - 0.5  # input pixel -> canvas pixel (pixel-centre convention)
        x0, y0 = np.floor(pts.min(0)).astype(int) - margin
        x1, y1 = np.ceil(pts.max(0)).astype(int) + margin + 1
        outside[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = False
    return outside


def _psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(10 * np.log10(peak**2 / max(np.mean(d**2), 1e-12)))


def _psnr_changed(a: np.ndarray, b: np.ndarray) -> float:
    changed = np.any(a != b, axis=2)
    return _psnr(a[changed], b[changed]) if changed.any() else float("inf")


# ---------------------------------------------------------------------------------------- --bg-upsampler


def test_upsampled_background_streams_to_tiff_and_png_and_equals_the_collected_output(cheap_x2, tmp_path):
    """t1 as PNG, TIFF (both streamed band by band) and BMP (collected): the three outputs are identical, the
    background outside every face crop is exactly the network's (nearest x2), the faces are pasted at the output
    scale (passthrough: >= 40 dB against the upsampled background inside the crops), report.jsonl records the
    detail mode per face."""
    img = cv2.imread(str(shared_file("images", "insightface", "t1.jpg")), cv2.IMREAD_COLOR)
    src = tmp_path / "in"
    src.mkdir()
    for ext in ("png", "tif", "bmp"):
        cv2.imwrite(str(src / f"t1.{ext}"), img)
    out = tmp_path / "out"
    res = run_images(src, out, restorer_name="none", bg_upsampler=cheap_x2, upscale=2, **_fast())
    assert res.failed == [] and res.processed == 3 and res.faces == 18
    outs = {ext: cv2.imread(str(out / f"t1.{ext}"), cv2.IMREAD_UNCHANGED) for ext in ("png", "tif", "bmp")}
    assert outs["png"].shape == (2 * img.shape[0], 2 * img.shape[1], 3)
    assert np.array_equal(outs["png"], outs["tif"]) and np.array_equal(outs["png"], outs["bmp"])
    recs = [r for r in read_jsonl(out / "report.jsonl") if r["source"].endswith("t1.png")]
    assert len(recs) == 6 and {r["paste"]["detail"] for r in recs} == {"restored"}  # 250-px faces < the 512 crop
    bg = _nearest(img, 2)
    outside = _outside_faces(bg.shape[:2], recs, 2)
    assert outside.mean() > 0.5
    assert np.array_equal(outs["png"][outside], bg[outside])
    changed = np.any(outs["png"] != bg, axis=2)
    assert changed.any() and not (changed & outside).any()
    psnr = _psnr(outs["png"][~outside], bg[~outside])
    print(f"t1 x2 with cheap-x2: faces pasted at {psnr:.1f} dB against the upsampled background")
    assert psnr >= 40.0


def test_upscale_differs_from_the_network_scale(cheap_x2, tmp_path):
    """--upscale 3 with an x2 network: the background is the network's output resized band by band (Lanczos-4
    when enlarging): within 1 level of OpenCV's whole-image resize of it everywhere outside the faces."""
    img = cv2.imread(str(shared_file("images", "insightface", "t1.jpg")), cv2.IMREAD_COLOR)
    img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    src = tmp_path / "t1.png"
    cv2.imwrite(str(src), img)
    res = run_images(src, tmp_path / "out", restorer_name="none", bg_upsampler=cheap_x2, upscale=3, **_fast())
    assert res.failed == []
    out = cv2.imread(str(tmp_path / "out" / "t1.png"), cv2.IMREAD_UNCHANGED)
    h, w = img.shape[:2]
    ref = cv2.resize(_nearest(img, 2), (3 * w, 3 * h), interpolation=cv2.INTER_LANCZOS4)
    assert out.shape == ref.shape
    recs = read_jsonl(tmp_path / "out" / "report.jsonl")
    outside = _outside_faces(out.shape[:2], recs, 3)
    d = np.abs(out[outside].astype(int) - ref[outside])
    print(f"x2 net, --upscale 3: max |diff| {d.max()}, {100 * (d == 0).mean():.1f} % of values equal")
    assert d.max() <= 1  # float32 band resize vs OpenCV's fixed-point one: 91 % equal, the rest 1 level off


@pytest.mark.parametrize("opts", [{"tiling": "official", "tile": 64, "pre_pad": 10}, {"compat": "gfpgan"}])
def test_official_tiling_and_compat_use_the_upsampler_for_the_background(cheap_x2, tmp_path, opts):
    """``--tiling official`` (RealESRGANer.enhance: tiles of 64, pre_pad 10) and ``--compat gfpgan`` (its
    background through RealESRGANer.enhance, tile 400) both put the network's output behind the faces: nearest x2
    of the input, exactly, outside every face crop."""
    img = cv2.imread(str(shared_file("images", "insightface", "t1.jpg")), cv2.IMREAD_COLOR)
    img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    src = tmp_path / "t1.png"
    cv2.imwrite(str(src), img)
    res = run_images(src, tmp_path / "out", restorer_name="none", bg_upsampler=cheap_x2, upscale=2, **opts, **_fast())
    assert res.failed == [] and res.faces >= 4
    out = cv2.imread(str(tmp_path / "out" / "t1.png"), cv2.IMREAD_UNCHANGED)
    recs = read_jsonl(tmp_path / "out" / "report.jsonl")
    assert all(r["paste"].get("compat") == opts.get("compat") for r in recs)
    outside = _outside_faces(out.shape[:2], recs, 2)
    assert np.array_equal(out[outside], _nearest(img, 2)[outside])


@pytest.mark.parametrize("layout", ["16bit", "gray16", "rgba", "gray_alpha"])
def test_depth_gray_and_alpha_survive_the_upsampler(cheap_x2, tmp_path, layout):
    """16-bit stays 16-bit (the low byte too), gray stays one channel, alpha is upscaled separately and kept:
    outside the faces every value equals nearest x2 of the input, in every layout (TIFF and PNG streamed)."""
    img8 = cv2.imread(str(shared_file("images", "insightface", "t1.jpg")), cv2.IMREAD_COLOR)
    img8 = cv2.resize(img8, (img8.shape[1] // 2, img8.shape[0] // 2), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(3)
    ramp = np.linspace(0, 255, img8.shape[1], dtype=np.float32)[None, :].repeat(img8.shape[0], 0)
    if layout == "16bit":
        img = (img8.astype(np.uint16) * 257 + rng.integers(0, 257, img8.shape, dtype=np.uint16)).astype(np.uint16)
        name = "a.tif"
    elif layout == "gray16":
        g = cv2.cvtColor(img8, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
        img = (g + rng.integers(0, 257, g.shape, dtype=np.uint16))[:, :, None].astype(np.uint16)
        name = "a.png"
    elif layout == "rgba":
        img = np.dstack([img8, ramp.astype(np.uint8)])
        name = "a.png"
    else:
        img = np.dstack([cv2.cvtColor(img8, cv2.COLOR_BGR2GRAY), ramp.astype(np.uint8)])
        name = "a.tif"
    src = tmp_path / name
    if layout == "gray_alpha":
        import tifffile

        tifffile.imwrite(src, img, photometric="minisblack", extrasamples=("unassalpha",))
    else:
        cv2.imwrite(str(src), img)
    res = run_images(src, tmp_path / "out", restorer_name="none", bg_upsampler=cheap_x2, upscale=2, **_fast())
    assert res.failed == [] and res.faces >= 4
    if layout == "gray_alpha":
        import tifffile

        out = tifffile.imread(tmp_path / "out" / name)
    else:
        out = cv2.imread(str(tmp_path / "out" / name), cv2.IMREAD_UNCHANGED)
    out = out[:, :, None] if out.ndim == 2 else out
    ref = _nearest(img if img.ndim == 3 else img[:, :, None], 2)
    assert out.dtype == img.dtype and out.shape == ref.shape
    outside = _outside_faces(out.shape[:2], read_jsonl(tmp_path / "out" / "report.jsonl"), 2)
    assert np.array_equal(out[outside], ref[outside])
    if layout in ("rgba", "gray_alpha"):
        assert np.array_equal(out[:, :, -1], ref[:, :, -1])  # faces never touch alpha
    if img.dtype == np.uint16:
        assert np.any(out[outside] % 257 != 0)  # the low byte survived: no 8-bit round trip


def test_streamed_outputs_keep_icc_dpi_xmp_and_exif(cheap_x2, tmp_path):
    """The streaming TIFF and PNG writers carry what the whole-image encoders carry: ICC, DPI, XMP, the EXIF IFD0
    tags and (TIFF) the Exif and GPS sub-IFDs, PNG's eXIf chunk."""
    from PIL import Image

    from tests.archival.test_metadata import XMP, _assert_exif, _exif, _icc

    im = Image.open(shared_file("images", "insightface", "t1.jpg")).convert("RGB")
    im.thumbnail((400, 400))
    src = tmp_path / "in"
    src.mkdir()
    exif = _exif()
    exif[700] = XMP  # Pillow writes a TIFF's EXIF as its IFD0 tags: the XMP packet goes there too
    im.save(src / "a.tif", exif=exif.tobytes(), icc_profile=_icc(), dpi=(600, 600))
    im.save(src / "b.png", exif=_exif().tobytes(), icc_profile=_icc(), dpi=(600, 600))
    res = run_images(src, tmp_path / "out", restorer_name="none", bg_upsampler=cheap_x2, upscale=2, **_fast())
    assert res.failed == [] and res.processed == 2
    assert not [w for w in res.warnings if "EXIF" in w["warning"]], res.warnings
    for name in ("a.tif", "b.png"):
        with Image.open(tmp_path / "out" / name) as o:
            assert o.size == (2 * im.width, 2 * im.height)
            assert o.info.get("icc_profile") == _icc()
            assert [round(float(v)) for v in o.info["dpi"]] == [600, 600]
            _assert_exif(o.getexif())
    import tifffile

    with tifffile.TiffFile(tmp_path / "out" / "a.tif") as tf:  # an independent reader finds the sub-IFDs
        tags = tf.pages[0].tags
        assert tf.pages[0].predictor == 2  # written by the streaming writer
        assert bytes(tags[700].value) == XMP and tags["Software"].value == "EpsonScan 2"
        assert tags["ExifTag"].value["DateTimeOriginal"] == "1931:06:20 14:00:00"
        assert tags["GPSTag"].value["GPSLatitudeRef"] == "N"


def test_real_rrdbnet_x2_from_a_make_checkpoint_file_end_to_end(tmp_path, _isolated_home):
    """realesrgan-x2 with make_checkpoint weights, imported with ``weights import --as realesrgan-x2 --trust``, through
    the real CLI on a small photo: the output's background (outside the face) is RealESRGANer.enhance's untiled
    output (upsample.official, checked against the official golden) within 1 level, equal on >= 99.9 % of the
    values (measured: identical)."""
    from facerest_cli.upsample.models import UpsamplerInfo, UpsamplerNet, build_upsampler_module
    from facerest_cli.upsample.official import enhance_official
    from facerest_cli.weights.registry import load_registry
    from tests.models.golden import write_official_checkpoint

    ckpt = write_official_checkpoint("realesrgan_x2plus", tmp_path / "RealESRGAN_x2plus.pth")
    imp = run_cli("weights", "import", ckpt, "--as", "realesrgan-x2", "--trust")
    assert imp.returncode == 0, imp.stdout + imp.stderr
    face = cv2.imread(str(shared_file("images", "gfpgan", "cropped_faces", "Adele_crop.png")), cv2.IMREAD_COLOR)
    img = cv2.copyMakeBorder(cv2.resize(face, (96, 96), interpolation=cv2.INTER_AREA), 16, 16, 24, 24,
                             cv2.BORDER_REFLECT)  # 144 x 128, the face in the middle
    src = tmp_path / "small.png"
    cv2.imwrite(str(src), img)
    proc = run_cli("run", src, "-o", tmp_path / "out", "--restorer", "none", "--bg-upsampler", "realesrgan-x2",
                   "--upscale", "2", *FAST)
    assert proc.returncode == 0, proc.stderr
    out = cv2.imread(str(tmp_path / "out" / "small.png"), cv2.IMREAD_UNCHANGED)
    (rec,) = read_jsonl(tmp_path / "out" / "report.jsonl")
    net = UpsamplerNet(build_upsampler_module(load_registry().get("realesrgan-x2"), ckpt),
                       UpsamplerInfo("realesrgan-x2", 2, 2, None))
    ref, _ = enhance_official(img, net.forward, 2, tile=0, pre_pad=0)
    assert out.shape == ref.shape == (2 * img.shape[0], 2 * img.shape[1], 3)
    outside = _outside_faces(out.shape[:2], [rec], 2)
    assert outside.mean() > 0.05
    d = np.abs(out[outside].astype(int) - ref[outside])
    print(f"RRDBNet x2 through run vs official untiled: max |diff| {d.max()}, {100 * (d > 0).mean():.3f} % differ")
    assert d.max() <= 1 and (d == 0).mean() >= 0.999
    assert rec["paste"] == {"detail": "restored"}


# ---------------------------------------------------------------------------------- --detail through run


FFHQ = [f"{i:05d}.png" for i in range(10)]


def _ffhq_run(tmp_path: Path, scale: int, names=FFHQ, **opts) -> tuple[dict, list[dict], Path]:
    src = tmp_path / f"in{scale}"
    src.mkdir()
    imgs = {}
    for n in names:
        img = cv2.imread(str(shared_file("images", "gpen", "ffhq-10", n)), cv2.IMREAD_COLOR)
        if scale != 1:
            img = cv2.resize(img, (img.shape[1] * scale, img.shape[0] * scale), interpolation=cv2.INTER_LANCZOS4)
        cv2.imwrite(str(src / n), img)
        imgs[n] = img
    out = tmp_path / f"out{scale}"
    res = run_images(src, out, restorer_name="none", **_fast(), **opts)
    assert res.failed == [] and res.processed == len(names)
    return imgs, read_jsonl(out / "report.jsonl"), out


def _check_ffhq(imgs, recs, out, min_db: float) -> list[float]:
    psnrs = []
    for n, img in imgs.items():
        got = cv2.imread(str(out / n), cv2.IMREAD_UNCHANGED)
        psnrs.append(_psnr_changed(img, got))
        faces = [r for r in recs if r["source"].endswith(n)]
        assert faces and all(r["paste"]["detail"] == "keep" for r in faces), (n, [r.get("paste") for r in faces])
    print("ffhq-10 --restorer none: " + ", ".join(f"{p:.1f}" for p in psnrs) + " dB over the changed pixels")
    assert min(psnrs) >= min_db
    return psnrs


def test_ffhq_restorer_none_round_trip_reaches_45_db_through_run(tmp_path):
    """Acceptance 3 through ``facerest run`` (defaults: --detail keep, --upscale 1): >= 45 dB over the changed
    region on every ffhq-10 photo (faces 450-620 px, larger than the 512 crop), every face recorded as keep.
    ``--detail restored`` gives the issue's baseline on the same photo (< 43 dB) and is recorded as such."""
    imgs, recs, out = _ffhq_run(tmp_path, 1)
    _check_ffhq(imgs, recs, out, 45.0)
    n = FFHQ[0]
    res = run_images(tmp_path / "in1" / n, tmp_path / "restored", restorer_name="none", detail="restored", **_fast())
    assert res.failed == []
    got = cv2.imread(str(tmp_path / "restored" / n), cv2.IMREAD_UNCHANGED)
    base = _psnr_changed(imgs[n], got)
    print(f"{n} --detail restored: {base:.1f} dB")
    assert base < 43.0
    assert {r["paste"]["detail"] for r in read_jsonl(tmp_path / "restored" / "report.jsonl")} == {"restored"}


@pytest.mark.slow
def test_ffhq_scaled_x2_round_trip_reaches_45_db_through_run(tmp_path):
    """Acceptance 3, the same photos scaled x2 (2048^2, Lanczos-4): >= 45 dB over the changed region."""
    imgs, recs, out = _ffhq_run(tmp_path, 2)
    _check_ffhq(imgs, recs, out, 45.0)


class BlurRestorer:
    """A test restorer (restore/base.py protocol) that blurs its crops: Gaussian, sigma 2 crop pixels, separable."""

    name = "blur"
    template = "ffhq512"
    needs_prior = False
    size = 512

    def __call__(self, x, prior=None):  # (N, 3, S, S) float RGB [0, 1]
        import torch
        from torch.nn.functional import conv2d, pad

        k = torch.exp(-0.5 * (torch.arange(-6, 7, dtype=x.dtype) / 2.0) ** 2)
        k = k / k.sum()
        x = conv2d(pad(x, (6, 6, 0, 0), mode="replicate"), k.view(1, 1, 1, 13).repeat(3, 1, 1, 1), groups=3)
        return conv2d(pad(x, (0, 0, 6, 6), mode="replicate"), k.view(1, 1, 13, 1).repeat(3, 1, 1, 1), groups=3)


def test_detail_keep_returns_the_band_a_blurring_restorer_removed_through_run(tmp_path):
    """Acceptance 4 through the run: a restorer that blurs its crop (Gaussian, sigma 2 crop px) on a grainy 1024^2
    face (ffhq 00001 plus grain, sigma 6 levels). With keep, the output's band above the crop's Nyquist (FFT,
    along the crop's axes: tests/blend/test_detail.py's ``_band``) equals the input's within 10 % relative L2; with
    restored it is gone (> 90 % error). report.jsonl records the mode."""
    from tests.blend.test_detail import _band

    img0 = cv2.imread(str(shared_file("images", "gpen", "ffhq-10", "00001.png")), cv2.IMREAD_COLOR)
    rng = np.random.default_rng(0)
    img = np.clip(img0 + rng.normal(0, 6, img0.shape), 0, 255).astype(np.uint8)
    src = tmp_path / "grain.png"
    cv2.imwrite(str(src), img)
    errs = {}
    for mode in ("keep", "restored"):
        res = run_images(src, tmp_path / mode, restorer=BlurRestorer(), detail=mode, **_fast())
        assert res.failed == [] and res.faces >= 1
        out = cv2.imread(str(tmp_path / mode / "grain.png"), cv2.IMREAD_UNCHANGED)
        recs = read_jsonl(tmp_path / mode / "report.jsonl")
        assert {r["paste"]["detail"] for r in recs} == {mode}
        m = np.array(recs[0]["matrix"])
        s = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
        assert s < 0.6  # the face is about twice the crop
        # where the feather mask is 1: the crop's central 76 % (outer = 0.12 of the side on each border)
        inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
        yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
        cx = m[0, 0] * xx + m[0, 1] * yy + m[0, 2]
        cy = m[1, 0] * xx + m[1, 1] * yy + m[1, 2]
        inner = (cx > 0.15 * 512) & (cx < 0.85 * 512) & (cy > 0.15 * 512) & (cy < 0.85 * 512)
        corners = (np.array([[0, 0, 1], [512, 0, 1], [0, 512, 1], [512, 512, 1]]) @ inv.T)[:, :2]
        x0, y0 = np.maximum(0, np.floor(corners.min(0)).astype(int))
        x1, y1 = np.minimum([img.shape[1], img.shape[0]], np.ceil(corners.max(0)).astype(int))
        roi, sub = (x0, y0, x1, y1), inner[y0:y1, x0:x1]
        nyq, rot = 0.5 * s, m[:, :2] / s
        ref = _band(img, roi, rot, nyq, 1.5 * nyq)[sub]
        errs[mode] = float(np.linalg.norm(_band(out, roi, rot, nyq, 1.5 * nyq)[sub] - ref) / np.linalg.norm(ref))
    print(f"band 1-1.5 x Nyquist, relative L2 error: keep {errs['keep']:.3f}, restored {errs['restored']:.3f}")
    assert errs["keep"] <= 0.10 and errs["restored"] >= 0.90


# ----------------------------------------------------------------------------------------- --compat gfpgan


def test_compat_gfpgan_run_equals_the_library_path_and_records_compat(tmp_path):
    """``--compat gfpgan --restorer none`` on t1: the output equals ``gfpgan_paste`` (bit-exact with the official
    pipeline golden, tests/blend/test_gfpgan_compat.py) on the same detections with an identity restorer and the
    square mask (no ParseNet in ../shared); every face records compat gfpgan. A 16-bit copy is read as GFPGAN reads
    it (8-bit, cv2.imread) and written 8-bit, with a warning."""
    from facerest_cli.blend.gfpgan_compat import gfpgan_paste
    from facerest_cli.config import DetectConfig, RunConfig
    from facerest_cli.detect.registry import build_detector
    from facerest_cli.align.faces import FacePreparer
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    img = cv2.imread(str(shared_file("images", "insightface", "t1.jpg")), cv2.IMREAD_COLOR)
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "t1.png"), img)
    cv2.imwrite(str(src / "t1_16.png"), img.astype(np.uint16) * 256 + 100)
    res = run_images(src, tmp_path / "out", restorer_name="none", compat="gfpgan", upscale=2, **_fast())
    assert res.failed == [] and res.processed == 2
    recs = read_jsonl(tmp_path / "out" / "report.jsonl")
    assert recs and all(r["paste"] == {"detail": "restored", "compat": "gfpgan"} for r in recs)
    assert any("read as 8-bit" in w["warning"] for w in res.warnings if w["path"].endswith("t1_16.png"))
    out = cv2.imread(str(tmp_path / "out" / "t1.png"), cv2.IMREAD_UNCHANGED)
    out16 = cv2.imread(str(tmp_path / "out" / "t1_16.png"), cv2.IMREAD_UNCHANGED)
    assert out16.dtype == np.uint8 and np.array_equal(out16, out)  # (256 v + 100) >> 8 == v: the same 8-bit image

    store = WeightsStore(WeightsConfig.from_env())
    cfg = RunConfig(inputs=(src,))
    det = build_detector(DetectConfig(), store, "cpu")
    dets = FacePreparer(cfg, det, 512, "ffhq512", "none").detect(img)
    assert len(dets) == len(recs) // 2
    ref = gfpgan_paste(img, np.stack([d.landmarks for d in dets]), lambda c: c, upscale=2, use_parse=False)
    assert out.shape == ref.output.shape and np.array_equal(out, ref.output)


# ---------------------------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize("blend,message", [
    ({"tile": 128}, "only apply with --bg-upsampler"),
    ({"tiling": "official"}, "only apply with --bg-upsampler"),
    ({"bg_upsampler": "realesrgan-x2", "pre_pad": 10}, "--pre-pad applies to --tiling official"),
    ({"detail": "sharp"}, "--detail must be one of keep, restored"),
    ({"compat": "codeformer"}, "--compat must be one of none, gfpgan"),
    ({"compat": "gfpgan", "mask": "bisenet"}, "GFPGAN's masks"),
    ({"compat": "gfpgan", "color_fix": True}, "no colour fix"),
    ({"bg_upsampler": "realesrgan-x2", "compat": "gfpgan", "tiling": "official"}, "drop --tiling"),
    ({"bg_upsampler": "realesrgan-x2", "tile": 4}, "at least 8 pixels"),
])
def test_blend_options_are_validated(blend, message):
    from facerest_cli.config import BlendConfig
    from facerest_cli.errors import UsageError

    with pytest.raises(UsageError, match=message):
        BlendConfig(**blend)


def test_run_refuses_impossible_combinations_before_touching_inputs(tmp_path):
    """Exit 2 with one clear line, and no output folder content, for: an unknown upsampler, --denoise-strength on an
    upsampler without a wdn twin, --aligned with --bg-upsampler."""
    src = shared_file("images", "insightface", "t1.jpg")
    cases = [
        (("--bg-upsampler", "esrgan-x9"), "--bg-upsampler must be none or one of"),
        (("--bg-upsampler", "realesrgan-x2", "--denoise-strength", "0.3"), "--denoise-strength applies to"),
        (("--bg-upsampler", "realesrgan-x2", "--aligned"), "--aligned writes the restored crop itself"),
    ]
    for i, (args, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        proc = run_cli("run", src, "-o", out, "--restorer", "none", *args, *FAST)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert not (out / "t1.jpg").exists()


# ------------------------------------------------------------------------------------ 100 megapixels, slow


_RSS_WRAPPER = """
import json, resource, subprocess, sys
proc = subprocess.run([sys.executable, "-m", "facerest_cli", *sys.argv[1:]], capture_output=True, text=True)
print(json.dumps({"rc": proc.returncode, "stderr": proc.stderr[-3000:],
                  "peak_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))
"""


def _run_measured(args: list, timeout: float) -> dict:
    """``facerest ARGS`` in a fresh wrapper process whose only child is the CLI: the kernel's high-water mark of
    that child (``ru_maxrss`` of the waited-for children) is the run's peak RSS."""
    proc = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["rc"] == 0, r["stderr"]
    return r


@pytest.mark.slow
def test_100_megapixel_scan_through_run_peaks_under_3_gb(cheap_x2, tmp_path):
    """Acceptance 5 through ``facerest run``: a generated 10000x10000 TIFF scan with a 1024^2 face (ffhq 00000) in
    the middle, ``--bg-upsampler cheap-x2 --upscale 2 --tile 256`` (cheap-x2: the upsampler interface at ~12 FLOP
    per output pixel; RRDBNet's 2.2 MFLOP would make this CPU-hours, and its per-tile memory is bounded by the tile:
    tests/upsample/test_memory.py). Peak RSS of the whole CLI process < 3 GB, where one float32 copy of the output
    alone would be 4.8 GB; the 20000x20000 output is right (face pasted, background exact)."""
    import tifffile

    h = w = 10000
    scan = np.empty((h, w, 3), np.uint8)
    x = np.arange(w, dtype=np.int32)
    for y0 in range(0, h, 500):
        y = np.arange(y0, y0 + 500, dtype=np.int32)[:, None]
        for c in range(3):
            scan[y0 : y0 + 500, :, c] = (x[None, :] // 3 + y // 5 + 40 * c) % 200 + 20
    face = cv2.imread(str(shared_file("images", "gpen", "ffhq-10", "00000.png")), cv2.IMREAD_COLOR)
    scan[4488:5512, 4488:5512] = face
    src = tmp_path / "scan.tif"
    tifffile.imwrite(src, scan[:, :, ::-1], photometric="rgb", compression="zlib", compressionargs={"level": 1})
    del scan
    out = tmp_path / "out"
    r = _run_measured(["run", src, "-o", out, "--restorer", "none", "--bg-upsampler", cheap_x2, "--upscale", "2",
                       "--tile", "256", "--det-size", "2048", *FAST], timeout=3600)
    gib = r["peak_rss"] / 2**30
    print(f"100 MP scan, cheap-x2, --upscale 2 --tile 256 -> 400 MP TIFF: peak RSS {gib:.2f} GiB")
    assert r["peak_rss"] < 3 * 10**9
    (rec,) = read_jsonl(out / "report.jsonl")
    assert rec["paste"]["detail"] == "keep"  # a 1024-px face is larger than the crop (and twice that at x2)
    with tifffile.TiffFile(out / "scan.tif") as tf:
        page = tf.pages[0]
        assert page.shape == (20000, 20000, 3) and page.dtype == np.uint8
    # Spot checks without decoding the whole output: the strip holding canvas rows 400..415 (far from the face)
    # is nearest x2 of the scan's rows 200..207.
    import zlib

    with tifffile.TiffFile(out / "scan.tif") as tf, open(out / "scan.tif", "rb") as fh:
        page = tf.pages[0]
        rps = page.rowsperstrip
        i = 400 // rps
        fh.seek(page.dataoffsets[i])
        raw = np.frombuffer(zlib.decompress(fh.read(page.databytecounts[i])), np.uint8).reshape(-1, 20000, 3)
        strip = np.cumsum(raw, axis=1, dtype=np.uint8)  # undo predictor 2
    y0 = i * rps
    ys = np.arange(y0, y0 + len(strip)) // 2
    xs = np.arange(20000) // 2
    expect = ((xs[None, :] // 3 + ys[:, None] // 5)[:, :, None] + 40 * np.arange(3)[None, None, ::-1]) % 200 + 20
    assert np.array_equal(strip, expect.astype(np.uint8))

"""Band consumers: the streaming PNG and TIFF writers decode (OpenCV, tifffile, Pillow) to exactly the pixels
fed, in every layout and depth; the streaming resize matches OpenCV's whole-image resize."""

from __future__ import annotations

import numpy as np
import pytest

from facerest_cli.upsample.tiling import Band


def _bands(img: np.ndarray, heights=(7, 1, 30, 13)) -> list[Band]:
    out, y, i = [], 0, 0
    while y < len(img):
        h = heights[i % len(heights)]
        out.append(Band(y, img[y : y + h]))
        y += h
        i += 1
    return out


LAYOUTS = [((45, 61), np.uint8), ((45, 61, 1), np.uint16), ((45, 61, 2), np.uint8), ((45, 61, 3), np.uint8),
           ((45, 61, 3), np.uint16), ((45, 61, 4), np.uint16)]


@pytest.mark.parametrize("shape,dtype", LAYOUTS)
def test_png_stream_round_trips(tmp_path, shape, dtype):
    import cv2

    from facerest_cli.upsample.stream import write_png_stream

    img = np.random.default_rng(0).integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    p = tmp_path / "a.png"
    write_png_stream(p, _bands(img), img.shape, img.dtype, icc_profile=b"\x00" * 128, dpi=(600.0, 600.0))
    back = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if len(shape) == 3 and shape[2] == 2:  # OpenCV reads gray+alpha as BGRA
        assert np.array_equal(back[:, :, 0], img[:, :, 0]) and np.array_equal(back[:, :, 3], img[:, :, 1])
    else:
        assert back.dtype == img.dtype and np.array_equal(back.reshape(img.shape), img)
    from PIL import Image

    with Image.open(p) as im:
        assert im.info.get("icc_profile") == b"\x00" * 128 and round(im.info["dpi"][0]) == 600


@pytest.mark.parametrize("shape,dtype", LAYOUTS)
def test_tiff_stream_round_trips(tmp_path, shape, dtype):
    import tifffile

    from facerest_cli.upsample.stream import write_tiff_stream

    img = np.random.default_rng(1).integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    p = tmp_path / "a.tif"
    write_tiff_stream(p, _bands(img), img.shape, img.dtype, icc_profile=b"\x01" * 64, dpi=(300.0, 300.0),
                      rows_per_strip=8)
    with tifffile.TiffFile(p) as tf:
        page = tf.pages[0]
        back = page.asarray()
        assert page.rowsperstrip == 8 and page.compression == 8 and page.predictor == 2
        assert page.tags[34675].value == b"\x01" * 64
    c = 1 if len(shape) == 2 else shape[2]
    expect = img if c in (1, 2) else img[:, :, [2, 1, 0, 3][:c]]  # file order RGB(A)
    assert back.dtype == img.dtype and np.array_equal(back.reshape(expect.shape), expect)


def test_bands_must_arrive_in_order(tmp_path):
    from facerest_cli.upsample.stream import collect_bands, write_png_stream

    img = np.zeros((10, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="expected 0"):
        collect_bands([Band(5, img[5:]), Band(0, img[:5])], img.shape, img.dtype)
    with pytest.raises(ValueError, match="covered 5 of 10"):
        write_png_stream(tmp_path / "x.png", [Band(0, img[:5])], img.shape, img.dtype)
    assert not (tmp_path / "x.png").exists()  # atomic: nothing left behind


@pytest.mark.parametrize("out_hw,tol", [((50, 61), 1), ((100, 130), 3), ((150, 183), 3)])
def test_resize_bands_matches_whole_image_resize(out_hw, tol):
    """Shrinking by an integer factor is the exact area average (OpenCV INTER_AREA); enlarging is Lanczos-4 (OpenCV
    differs by its fixed-point kernel tables: a few levels on noise)."""
    import cv2

    from facerest_cli.upsample.stream import collect_bands, resize_bands

    rng = np.random.default_rng(4)
    img = cv2.GaussianBlur(rng.integers(0, 256, (100, 122, 3), dtype=np.uint8), (0, 0), 1.0)
    h, w = out_hw
    got = collect_bands(resize_bands(_bands(img), img.shape[:2], out_hw, img.dtype, chunk=16), (h, w, 3), np.uint8)
    ref = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if h < 100 else cv2.INTER_LANCZOS4)
    d = np.abs(got.astype(int) - ref)
    inner = d[4:-4, 4:-4]
    assert inner.max() <= tol and inner.mean() < 0.5, (inner.max(), inner.mean())


@pytest.mark.parametrize("photo,detail", [(("insightface", "t1.jpg"), "restored"), (("gpen", "ffhq-10", "00006.png"), "keep")])
def test_faces_pasted_into_bands_equal_the_whole_canvas_paste(photo, detail):
    """Streaming paste (faces grouped by shared rows, pasted once their rows have all arrived) gives the same
    pixels as pasting onto the whole canvas; t1's six faces overlap in rows, ffhq 00006's two faces use keep."""
    import cv2

    from facerest_cli.align.templates import template_points
    from facerest_cli.align.warp import estimate_similarity, warp_to_crop
    from facerest_cli.blend.mask import feather_mask
    from facerest_cli.blend.paste import PasteItem, paste_faces
    from facerest_cli.upsample.stream import collect_bands, paste_faces_bands
    from tests.conftest import shared_file, weights_file

    img = cv2.imread(str(shared_file("images", *photo)), cv2.IMREAD_COLOR)
    det = cv2.FaceDetectorYN.create(str(weights_file("detection", "yunet_s_640_640.onnx")), "", (320, 320), 0.5, 0.3, 5000)
    det.setInputSize((img.shape[1], img.shape[0]))
    faces = det.detect(img)[1]
    items = []
    for f in faces:
        m = estimate_similarity(f[4:14].reshape(5, 2).astype(np.float64), template_points("ffhq512", 512))
        crop = warp_to_crop(img, m, 512).astype(np.float32) / 255
        items.append(PasteItem(np.clip(crop * 1.1 - 0.03, 0, 1), m, feather_mask(512), detail=detail))
    whole = paste_faces(img, items)
    banded = collect_bands(paste_faces_bands(_bands(img, heights=(37, 5, 120)), items, img.shape[:2]), img.shape, img.dtype)
    d = np.abs(banded.astype(int) - whole)
    assert d.max() <= 1 and (d > 0).mean() <= 1e-5, (d.max(), (d > 0).sum())
    assert not np.array_equal(whole, img)

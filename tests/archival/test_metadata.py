"""Acceptance 3 (issue 8): EXIF, ICC, DPI and XMP survive JPEG -> JPEG, TIFF -> TIFF and PNG -> PNG (read back with
Pillow and tifffile), EXIF orientation is normalised and said so, 16-bit stays 16-bit, --preserve-times."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from facerest_cli.io.exif import upright_exif
from tests.archival._data import fast_options, small_photo
from tests.conftest import run_images

XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:source="Box 12, folder 3"/></rdf:RDF></x:xmpmeta>')
IFD0 = {0x010E: "Wedding, 1931", 0x010F: "Epson", 0x0110: "Perfection V850", 0x0131: "EpsonScan 2",
        0x0132: "2019:05:06 07:08:09", 0x013B: "County Archive", 0x8298: "(c) County Archive"}
EXIF_IFD = {0x9003: "1931:06:20 14:00:00", 0x9286: b"ASCII\x00\x00\x00found in attic"}
GPS_IFD = {0x0001: "N", 0x0002: (51.0, 30.0, 0.0), 0x0003: "W", 0x0004: (0.0, 7.0, 0.0)}


@functools.lru_cache(maxsize=None)
def _icc() -> bytes:  # one profile for the whole module: its header holds a creation time
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif(orientation: int = 1) -> Image.Exif:
    e = Image.Exif()
    for k, v in IFD0.items():
        e[k] = v
    if orientation != 1:
        e[0x0112] = orientation
    e[0x8769] = dict(EXIF_IFD)
    e[0x8825] = dict(GPS_IFD)
    return e


def _run(src: Path, out: Path, **kw):
    return run_images(src, out, **fast_options(), **kw)


def _assert_exif(e: Image.Exif) -> None:
    for k, v in IFD0.items():
        assert e.get(k) == v, (hex(k), e.get(k))
    exif_ifd = e.get_ifd(0x8769)
    for k, v in EXIF_IFD.items():
        assert exif_ifd.get(k) == v, (hex(k), exif_ifd.get(k))
    gps = e.get_ifd(0x8825)
    assert gps.get(1) == "N" and gps.get(3) == "W"
    assert tuple(float(x) for x in gps[2]) == (51.0, 30.0, 0.0) and tuple(float(x) for x in gps[4]) == (0.0, 7.0, 0.0)


def test_jpeg_to_jpeg_keeps_exif_icc_dpi_xmp_and_normalises_orientation(tmp_path):
    upright = small_photo(400)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # orientation 6: rotate 90 CW to display
    src = tmp_path / "in" / "scan.jpg"
    src.parent.mkdir()
    exif_in = _exif(orientation=6).tobytes()
    stored.save(src, quality=92, exif=exif_in, icc_profile=_icc(), dpi=(600, 600), xmp=XMP)
    res = _run(src, tmp_path / "out")
    assert res.failed == [] and res.faces > 0
    assert {"path": str(src), "warning": "EXIF orientation 6 applied; output is upright with orientation 1"} in res.warnings
    with Image.open(tmp_path / "out" / "scan.jpg") as im:
        assert im.size == upright.size
        assert im.info["icc_profile"] == _icc()
        assert im.info["dpi"] == (600, 600)
        assert im.info["xmp"] == XMP
        e = im.getexif()
        assert e.get(0x0112) == 1
        _assert_exif(e)
        raw_out = im.info["exif"]
    with Image.open(src) as im:
        raw_in = im.info["exif"]
    # The EXIF block is carried byte for byte; only the orientation value changed.
    assert raw_out == upright_exif(raw_in) and raw_out != raw_in
    assert len(raw_out) == len(raw_in) and sum(a != b for a, b in zip(raw_out, raw_in)) == 1


def test_tiff_to_tiff_keeps_exif_subifds_icc_dpi_xmp(tmp_path):
    photo = small_photo(400)
    src = tmp_path / "in" / "scan.tif"
    src.parent.mkdir()
    exif = _exif()
    exif[700] = XMP  # Pillow writes a TIFF's EXIF as its IFD0 tags: the XMP packet goes there too
    photo.save(src, exif=exif.tobytes(), icc_profile=_icc(), dpi=(1200, 1200))
    with Image.open(src) as im:  # the input really holds what we check for
        _assert_exif(im.getexif())
    res = _run(src, tmp_path / "out")
    assert res.failed == [] and res.faces > 0
    out = tmp_path / "out" / "scan.tif"
    with Image.open(out) as im:
        assert im.mode == "RGB" and im.size == photo.size
        assert im.info["icc_profile"] == _icc()
        assert im.info["dpi"] == (1200, 1200)
        _assert_exif(im.getexif())
        assert bytes(im.tag_v2[700]) == XMP
    # An independent reader agrees (tifffile parses the Exif and GPS sub-IFDs it finds through IFD0).
    with tifffile.TiffFile(out) as tf:
        tags = tf.pages[0].tags
        assert tags["ExifTag"].value["DateTimeOriginal"] == EXIF_IFD[0x9003]
        assert tags["GPSTag"].value["GPSLatitudeRef"] == "N"
        assert tags["Software"].value == "EpsonScan 2"  # the scanner's, not "tifffile.py"
        assert tf.pages[0].asarray().shape == (photo.size[1], photo.size[0], 3)


def test_16bit_rgb_tiff_stays_16bit_with_its_metadata(tmp_path):
    photo = small_photo(400)
    rgb8 = np.asarray(photo)
    rng = np.random.default_rng(1)
    rgb16 = (rgb8.astype(np.uint16) * 257 + rng.integers(0, 257, rgb8.shape, dtype=np.uint16)).astype(np.uint16)
    src = tmp_path / "in" / "scan16.tif"
    src.parent.mkdir()
    tifffile.imwrite(src, rgb16, photometric="rgb", resolution=(800, 800), resolutionunit="INCH",
                     extratags=[(34675, "B", len(_icc()), _icc(), True), (700, "B", len(XMP), XMP, True),
                                (271, "s", 0, "Hasselblad", True), (33432, "s", 0, "(c) Archive", True)],
                     metadata=None)
    res = _run(src, tmp_path / "out")
    assert res.failed == [] and res.faces > 0
    out = tmp_path / "out" / "scan16.tif"
    with tifffile.TiffFile(out) as tf:
        page = tf.pages[0]
        a = page.asarray()
        assert a.dtype == np.uint16 and a.shape == rgb16.shape
        assert bytes(page.tags["InterColorProfile"].value) == _icc()
        assert bytes(page.tags["XMP"].value) == XMP
        assert page.tags["Make"].value == "Hasselblad" and page.tags["Copyright"].value == "(c) Archive"
        assert page.tags["XResolution"].value == (800, 1) and page.tags["ResolutionUnit"].value == 2
    untouched = np.all(a == rgb16, axis=2)
    assert untouched.mean() > 0.5 and np.any(a[untouched] % 257 != 0)  # low bytes kept, not 8-bit round trip


@pytest.mark.parametrize("sixteen", [False, True])
def test_png_keeps_icc_dpi_exif_xmp(tmp_path, sixteen):
    import cv2

    photo = small_photo(400)
    src = tmp_path / "in" / "scan.png"
    src.parent.mkdir()
    from PIL.PngImagePlugin import PngInfo

    if sixteen:  # 16-bit colour: written through OpenCV, metadata chunks injected
        bgr16 = (np.asarray(photo)[:, :, ::-1].astype(np.uint16) * 257 + 7).astype(np.uint16)
        ok, buf = cv2.imencode(".png", bgr16)
        assert ok
        plain = tmp_path / "plain.png"
        plain.write_bytes(buf.tobytes())
        from facerest_cli.io.sinks import _png_add_chunks
        from facerest_cli.types import ImageMeta

        meta = ImageMeta(format="PNG", bit_depth=16, channels=3, exif=_exif().tobytes(), icc_profile=_icc(), dpi=(300, 300), xmp=XMP)
        src.write_bytes(_png_add_chunks(plain.read_bytes(), meta))
    else:
        info = PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP.decode())
        photo.save(src, exif=_exif().tobytes(), icc_profile=_icc(), dpi=(300, 300), pnginfo=info)
    res = _run(src, tmp_path / "out")
    assert res.failed == [] and res.faces > 0
    out = tmp_path / "out" / "scan.png"
    with Image.open(out) as im:
        assert im.info["icc_profile"] == _icc()
        assert tuple(round(d) for d in im.info["dpi"]) == (300, 300)
        assert im.info["xmp"] == XMP
        _assert_exif(im.getexif())
    a = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert a.dtype == (np.uint16 if sixteen else np.uint8) and a.shape[2] == 3


def test_preserve_times_copies_the_input_mtime(tmp_path):
    src = tmp_path / "in" / "old.jpg"
    src.parent.mkdir()
    small_photo(300).save(src, quality=90)
    stamp = 631152000_123456789  # 1990-01-01 00:00:00.123456789
    os.utime(src, ns=(stamp, stamp))
    _run(src, tmp_path / "kept", preserve_times=True)
    _run(src, tmp_path / "plain")
    assert os.stat(tmp_path / "kept" / "old.jpg").st_mtime_ns == stamp
    assert os.stat(tmp_path / "plain" / "old.jpg").st_mtime_ns > stamp
    assert os.stat(src).st_mtime_ns == stamp  # the input is untouched


def test_cmyk_icc_profile_is_not_attached_to_the_rgb_output(tmp_path):
    from facerest_cli.io.decode import decode_image

    fake_cmyk_icc = bytes(16) + b"CMYK" + bytes(108)  # the header field a reader checks: colour space CMYK
    src = tmp_path / "print.jpg"
    small_photo(200).convert("CMYK").save(src, quality=90, icc_profile=fake_cmyk_icc)
    with Image.open(src) as im:
        assert im.mode == "CMYK" and im.info["icc_profile"] == fake_cmyk_icc
    img = decode_image(src)
    assert img.pixels.shape[2] == 3 and img.meta.icc_profile is None
    assert "CMYK ICC profile dropped: the output is RGB, which that profile cannot describe" in img.meta.warnings
    assert "CMYK converted to RGB" in img.meta.warnings

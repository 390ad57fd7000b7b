"""Image decoding: bytes -> upright ``DecodedImage`` with its metadata, or an ``InputError`` with a one-line reason.

Pillow reads the header first (format, size, EXIF, ICC, DPI, XMP) so that oversized images are refused before a
single pixel is decoded, and it detects truncated files (``load()`` raises instead of padding with grey, which is
what OpenCV's JPEG decoder does silently). 16-bit colour images go through OpenCV, because Pillow would reduce
them to 8 bits.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from facerest_cli.errors import InputError
from facerest_cli.types import DecodedImage, ImageMeta

DEFAULT_MAX_PIXELS = 250_000_000
# Largest file we read for a --max-pixels image: 8 bytes per pixel (16-bit RGBA, uncompressed) plus metadata.
_BYTES_PER_PIXEL_BOUND = 8
_FILE_SLACK = 256 << 20
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_EXIF_ORIENTATION = 0x0112


def _pil():
    from PIL import Image

    # We enforce our own, configurable pixel limit from the header (check_size); Pillow's fixed one
    # (~179 MP raises) would refuse scans our users are allowed to process.
    Image.MAX_IMAGE_PIXELS = None
    return Image


def apply_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip pixels so that an image with EXIF ``orientation`` (1-8) becomes upright."""
    if orientation == 2:
        a = a[:, ::-1]
    elif orientation == 3:
        a = a[::-1, ::-1]
    elif orientation == 4:
        a = a[::-1]
    elif orientation == 5:
        a = a.transpose(1, 0, 2)
    elif orientation == 6:
        a = np.rot90(a, k=-1)
    elif orientation == 7:
        a = np.rot90(a, k=2).transpose(1, 0, 2)
    elif orientation == 8:
        a = np.rot90(a, k=1)
    return np.ascontiguousarray(a)


def _is_16bit(im, data: bytes) -> bool:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return True
    if im.format == "PNG" and len(data) > 25:
        return data[24] == 16  # IHDR bit depth
    if im.format == "TIFF":
        bits = im.tag_v2.get(258) if hasattr(im, "tag_v2") else None
        if isinstance(bits, (tuple, list)):
            return max(bits) == 16
        return bits == 16
    return False


def _xmp(im) -> bytes | None:
    x = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if x is None and im.format == "TIFF" and hasattr(im, "tag_v2"):
        x = im.tag_v2.get(700)
    if isinstance(x, str):
        x = x.encode("utf-8")
    return bytes(x) if x else None


def _pixels_from_pil(im) -> tuple[np.ndarray, list[str]]:
    """(H, W, C) BGR/BGRA/gray(+alpha) array from a loaded Pillow image."""
    warn: list[str] = []
    mode = im.mode
    if mode == "1":
        im, mode = im.convert("L"), "L"
    if mode == "P":
        has_alpha = "transparency" in im.info or im.palette.mode == "RGBA"
        im = im.convert("RGBA" if has_alpha else "RGB")
        mode = im.mode
    if mode == "CMYK":
        im, mode = im.convert("RGB"), "RGB"
        warn.append("CMYK converted to RGB")
    if mode in ("YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La", "PA"):
        im = im.convert("RGBA" if "A" in mode or "a" in mode else "RGB")
        mode = im.mode
    if mode == "L":
        return np.asarray(im, dtype=np.uint8)[:, :, None], warn
    if mode == "LA":
        return np.asarray(im, dtype=np.uint8), warn
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)[:, :, None], warn
    if mode == "I":
        a = np.asarray(im)
        if a.min() < 0 or a.max() > 65535:
            raise ValueError("32-bit integer pixels outside the 16-bit range")
        return a.astype(np.uint16)[:, :, None], warn
    if mode == "F":
        raise ValueError("floating-point images are not supported")
    if mode == "RGB":
        return np.ascontiguousarray(np.asarray(im, dtype=np.uint8)[:, :, ::-1]), warn
    if mode == "RGBA":
        a = np.asarray(im, dtype=np.uint8)
        return np.ascontiguousarray(a[:, :, [2, 1, 0, 3]]), warn
    raise ValueError(f"unsupported pixel mode {mode}")


def check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise InputError(path, f"image has no pixels ({width}x{height})")
    if max_pixels and width * height > max_pixels:
        raise InputError(
            path,
            f"image is {width}x{height} = {_mp(width * height)} MP, above the {_mp(max_pixels)} MP limit "
            "(raise it with --max-pixels)",
        )


def check_png_chunks(data: bytes, path: Path) -> None:
    """Every PNG chunk's CRC must match: Pillow does not check IDAT's, and a damaged scan must not silently turn
    into a restored-looking output."""
    pos, n = 8, len(data)
    while pos + 12 <= n:
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > n:
            raise InputError(path, f"truncated PNG (chunk {kind.decode('latin-1')!r} runs past the end of the file)")
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            raise InputError(path, f"corrupt PNG: CRC mismatch in chunk {kind.decode('latin-1')!r} at byte {pos}")
        if kind == b"IEND":
            return
        pos = end
    raise InputError(path, "truncated PNG (no IEND chunk)")


def decode_image_bytes(data: bytes, path: Path, rel_path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    if not data:
        raise InputError(path, "empty file (0 bytes)")
    Image = _pil()
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InputError(path, "not an image file (content is not JPEG/PNG/TIFF/BMP/WebP)") from None
    except Exception as e:  # noqa: BLE001 - any parser failure is a bad input, reported in one line
        raise InputError(path, f"corrupt image header ({_one_line(e)})") from None
    with im:
        fmt = im.format or "?"
        width, height = im.size
        check_size(path, width, height, max_pixels)
        if data.startswith(_PNG_SIGNATURE):
            check_png_chunks(data, path)
        try:
            exif_obj = im.getexif()
            orientation = int(exif_obj.get(_EXIF_ORIENTATION, 1) or 1)
            if fmt == "TIFF":
                # A TIFF's "EXIF" is its IFD0: keep the descriptive tags, not the strip layout of this file.
                from facerest_cli.io.exif import clean_tiff_exif

                exif = clean_tiff_exif(exif_obj)
            else:
                exif = im.info.get("exif") or (exif_obj.tobytes() if len(exif_obj) else None)
        except Exception:  # noqa: BLE001 - broken EXIF must not lose the picture
            orientation, exif = 1, None
        if orientation not in range(1, 9):
            orientation = 1
        n_frames = int(getattr(im, "n_frames", 1) or 1)
        warn: list[str] = []
        if n_frames > 1:
            warn.append(f"{n_frames} frames/pages: only the first is processed")
        dpi = im.info.get("dpi")
        icc = im.info.get("icc_profile")
        if icc and im.mode == "CMYK" and icc[16:20] == b"CMYK":
            icc = None
            warn.append("CMYK ICC profile dropped: the output is RGB, which that profile cannot describe")
        meta_kwargs = dict(
            format=fmt,
            orientation=orientation,
            exif=exif,
            icc_profile=icc,
            dpi=(float(dpi[0]), float(dpi[1])) if dpi else None,
            xmp=_xmp(im),
            n_frames=n_frames,
        )
        sixteen = _is_16bit(im, data)
        try:
            im.seek(0)
            im.load()  # full decode: raises on truncated or corrupt data
            if sixteen and im.mode not in ("I;16", "I;16B", "I;16L", "I;16N", "I", "L"):
                pixels = _decode_cv2_16bit(data, path)
            else:
                pixels, w2 = _pixels_from_pil(im)
                warn += w2
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001
            raise InputError(path, f"truncated or corrupt image data ({_one_line(e)})") from None
    if pixels.dtype == np.uint16 and not sixteen:
        sixteen = True
    pixels = apply_orientation(pixels, orientation)
    if orientation != 1:
        warn.append(f"EXIF orientation {orientation} applied; output is upright with orientation 1")
    meta = ImageMeta(
        bit_depth=16 if pixels.dtype == np.uint16 else 8,
        channels=int(pixels.shape[2]),
        warnings=tuple(warn),
        sha256=hashlib.sha256(data).hexdigest(),
        **meta_kwargs,
    )
    return DecodedImage(path=path, rel_path=rel_path, pixels=pixels, meta=meta)


def _decode_cv2_16bit(data: bytes, path: Path) -> np.ndarray:
    import cv2

    a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise InputError(path, "corrupt 16-bit image data (OpenCV could not decode it)")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.dtype not in (np.uint8, np.uint16):
        raise InputError(path, f"unsupported sample type {a.dtype}")
    return np.ascontiguousarray(a)


def read_header_size(path: Path) -> tuple[int, int] | None:
    """Width and height from the header alone (no pixel decode), or None if unreadable."""
    Image = _pil()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                return im.size
    except Exception:  # noqa: BLE001
        return None


def decode_image(path: Path, rel_path: Path | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Read and decode one image file; every failure is an ``InputError`` naming the file."""
    path = Path(path)
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(path, "is a directory, not an image file")
        if not stat.S_ISREG(st.st_mode):
            raise InputError(path, "not a regular file (a FIFO, socket or device): refusing to read it")
        if max_pixels and st.st_size > max_pixels * _BYTES_PER_PIXEL_BOUND + _FILE_SLACK:
            raise InputError(
                path,
                f"file is {st.st_size / 2**30:.1f} GiB, more than any image within the {_mp(max_pixels)} MP "
                "limit can take (raise it with --max-pixels)",
            )
        data = path.read_bytes()
    except InputError:
        raise
    except PermissionError:
        raise InputError(path, "permission denied (cannot read the file)") from None
    except FileNotFoundError:
        if os.path.islink(path):
            raise InputError(path, f"broken symbolic link (its target {os.readlink(path)} does not exist)") from None
        raise InputError(path, "file not found") from None
    except OSError as e:
        raise InputError(path, f"cannot read the file ({e.strerror or e})") from None
    return decode_image_bytes(data, path, rel_path if rel_path is not None else Path(path.name), max_pixels)


def _mp(pixels: int) -> str:
    v = pixels / 1e6
    return f"{v:.0f}" if v >= 10 else f"{v:.3g}"


def _one_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__



def gray_normalised(img: DecodedImage) -> tuple[DecodedImage, bool]:
    """Detect grayscale photos stored as RGB(A) (all channels equal). Returns the image to process and whether it
    is grayscale; restored faces on a grayscale image are made grayscale, so no colour is ever invented.

    Such an image is written single-channel, unless it carries an RGB ICC profile, which a grayscale file cannot
    hold: then it keeps its channels (with R = G = B) so the profile survives.
    """
    from facerest_cli.blend.color import is_gray

    px = img.pixels
    if px.shape[2] in (1, 2):
        return img, True
    if not is_gray(px[:, :, :3]):
        return img, False
    icc = img.meta.icc_profile
    if icc and icc[16:20] != b"GRAY":
        return img, True
    new = px[:, :, [0, 3]] if px.shape[2] == 4 else px[:, :, :1]
    meta = ImageMeta(**{**img.meta.__dict__, "warnings": (*img.meta.warnings, "RGB with identical channels: written as grayscale")})
    return DecodedImage(img.path, img.rel_path, np.ascontiguousarray(new), meta), True

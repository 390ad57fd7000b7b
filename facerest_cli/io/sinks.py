"""Output naming, encoding with metadata, and atomic writes.

Every file we write goes to a hidden temp file in the destination directory, is flushed and fsynced, then renamed
over the final name: a crash at any moment leaves either no file or a complete one, never a torn one.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from facerest_cli.config import OUTPUT_FORMATS
from facerest_cli.errors import DiskFullError, FacerestError
from facerest_cli.pixels import from_float, to_uint8
from facerest_cli.types import ImageMeta

_EXT_FOR_FORMAT = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "BMP": ".bmp", "WEBP": ".webp"}
TEMP_PREFIX = ".facerest-"
TEMP_SUFFIX = ".tmp"


def output_format(meta_format: str, ext: str | None) -> str:
    if ext:
        return OUTPUT_FORMATS[ext.lower().lstrip(".")]
    return meta_format if meta_format in _EXT_FOR_FORMAT else "PNG"


def output_path(out_dir: Path, rel_path: Path, fmt: str, ext: str | None, suffix: str) -> Path:
    """``out_dir/<rel_path>`` with the optional suffix; the extension changes only when the format does."""
    rel = Path(rel_path)
    if rel.is_absolute() or any(part == ".." for part in rel.parts):
        raise FacerestError(f"refusing output path outside the output directory: {rel}")
    if fmt == "VIDEO":  # ext is the container chosen by the video stage
        return Path(out_dir) / rel.parent / f"{rel.stem}{suffix}.{ext}"
    keep_ext = ext is None and OUTPUT_FORMATS.get(rel.suffix.lower().lstrip(".")) == fmt
    new_ext = rel.suffix if keep_ext else ("." + ext.lower().lstrip(".") if ext else _EXT_FOR_FORMAT[fmt])
    return Path(out_dir) / rel.parent / f"{rel.stem}{suffix}{new_ext}"


def file_identity(path: Path | str) -> tuple[int, int] | None:
    """(device, inode) of the file ``path`` resolves to, or None: the same file under any name, link or case."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def is_inside(path: Path | str, root: Path | str) -> bool:
    """True if ``path``, with every symbolic link resolved, lies inside ``root`` (also resolved)."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([real, base]) == base


@contextlib.contextmanager
def atomic_open(path: Path, *, readable: bool = False) -> Iterator[BinaryIO]:
    """``with atomic_open(p) as f: f.write(...)``: streamed version of ``atomic_write_bytes`` (same temp naming,
    fsync, rename; nothing at ``path`` changes if the block raises). ``readable``: ``f`` may also be read back
    (a streamed TIFF whose IFD0 is patched after the image data)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temp(path.parent, readable=readable)
    try:
        with os.fdopen(fd, "r+b" if readable else "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if is_disk_full(e):
            raise disk_full(path) from None
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via temp file + fsync + rename; ENOSPC becomes ``DiskFullError``."""
    with atomic_open(path) as f:
        f.write(data)


def durable_append(f: BinaryIO, data: bytes, path: Path | str) -> None:
    """Append ``data`` to ``f`` (opened ``"ab"`` unbuffered) and fsync. If that fails the file is cut back to its
    previous length, so a failed append (disk full) leaves no torn line behind."""
    fd = f.fileno()
    pos = os.fstat(fd).st_size
    try:
        view = memoryview(data)
        while view:
            n = f.write(view)
            view = view[n or 0 :]
        os.fsync(fd)
    except OSError as e:
        try:
            os.ftruncate(fd, pos)
        except OSError:
            pass
        if is_disk_full(e):
            raise disk_full(path) from None
        raise


def is_disk_full(e: BaseException) -> bool:
    """ENOSPC (no space left) or EDQUOT (quota exceeded): nothing more can be written there."""
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def disk_full(path: Path | str) -> DiskFullError:
    return DiskFullError(
        f"disk full while writing {path}: the run stopped; everything written before is complete - free some space "
        "and run again with --resume"
    )


def create_temp(directory: Path, readable: bool = False) -> tuple[int, str]:
    """A new hidden temp file in ``directory``, created with mode 0o666 so the umask applies (mkstemp's 0o600
    would leave every output unreadable to the user's group)."""
    access = os.O_RDWR if readable else os.O_WRONLY
    for _ in range(100):
        name = os.path.join(directory, f"{TEMP_PREFIX}{secrets.token_hex(6)}{TEMP_SUFFIX}")
        try:
            return os.open(name, access | os.O_CREAT | os.O_EXCL, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {directory}")


def fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------- encoding


def _exif_upright(exif: bytes | None) -> bytes | None:
    """EXIF with orientation reset to 1, since the pixels we write are already upright (patched in place: every
    other byte of the block, maker notes included, is kept)."""
    from facerest_cli.io.exif import upright_exif

    return upright_exif(exif)


to_8bit = to_uint8  # the name detect/ uses


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def _png_add_chunks(png: bytes, meta: ImageMeta) -> bytes:
    """Insert iCCP / pHYs / eXIf / iTXt(XMP) after IHDR of an OpenCV-encoded PNG (16-bit colour path)."""
    chunks = b""
    if meta.icc_profile:
        chunks += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(meta.icc_profile))
    if meta.dpi:
        ppm = [int(round(d / 0.0254)) for d in meta.dpi]
        chunks += _png_chunk(b"pHYs", ppm[0].to_bytes(4, "big") + ppm[1].to_bytes(4, "big") + b"\x01")
    exif = _exif_upright(meta.exif)
    if exif:
        chunks += _png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
    if meta.xmp:
        chunks += _png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + meta.xmp)
    ihdr_end = 8 + 4 + 4 + 13 + 4
    return png[:ihdr_end] + chunks + png[ihdr_end:]


def _to_pil(pixels: np.ndarray):
    from PIL import Image

    c = pixels.shape[2]
    if pixels.dtype == np.uint16:
        if c != 1:
            raise ValueError("16-bit colour is written through OpenCV / tifffile")
        return Image.fromarray(np.ascontiguousarray(pixels[:, :, 0]), mode="I;16")
    if c == 1:
        return Image.fromarray(np.ascontiguousarray(pixels[:, :, 0]), mode="L")
    if c == 2:
        return Image.fromarray(np.ascontiguousarray(pixels), mode="LA")
    # Colour: Pillow unpacks BGR(A) itself, so no reordered full-size copy is made on our side.
    h, w = pixels.shape[:2]
    if c == 3:
        return Image.frombuffer("RGB", (w, h), np.ascontiguousarray(pixels), "raw", "BGR", 0, 1)
    return Image.frombuffer("RGBA", (w, h), np.ascontiguousarray(pixels), "raw", "BGRA", 0, 1)


def encode_image(pixels: np.ndarray, fmt: str, meta: ImageMeta, quality: int = 95) -> tuple[bytes, list[str]]:
    """Encode ``(H, W, C)`` BGR(A)/gray pixels as ``fmt``, carrying EXIF, ICC, DPI and XMP where the format can.

    Returns the bytes and warnings for anything that had to change (e.g. 16 -> 8 bit for JPEG).
    """
    warnings: list[str] = []
    pixels = np.ascontiguousarray(pixels)
    if fmt in ("JPEG", "BMP", "WEBP") and pixels.dtype == np.uint16:
        pixels = to_8bit(pixels)
        warnings.append(f"{fmt} cannot hold 16-bit samples: written as 8-bit")
    if fmt == "JPEG" and pixels.shape[2] in (2, 4):
        pixels = pixels[:, :, :-1] if pixels.shape[2] == 4 else pixels[:, :, :1]
        warnings.append("JPEG cannot hold transparency: alpha channel dropped")
    exif = _exif_upright(meta.exif)
    if fmt == "TIFF":
        data, w = _encode_tiff(pixels, meta, exif)
        return data, warnings + w
    if fmt == "PNG" and pixels.dtype == np.uint16 and pixels.shape[2] != 1:
        import cv2

        ok, buf = cv2.imencode(".png", pixels)
        if not ok:
            raise FacerestError("OpenCV failed to encode a 16-bit PNG")
        return _png_add_chunks(buf.tobytes(), meta), warnings
    im = _to_pil(pixels)
    kw: dict = {}
    if meta.icc_profile:
        kw["icc_profile"] = meta.icc_profile
    if meta.dpi and fmt in ("JPEG", "PNG", "BMP"):
        kw["dpi"] = meta.dpi
    if exif and fmt in ("JPEG", "PNG", "WEBP"):
        kw["exif"] = exif
    if meta.xmp and fmt in ("JPEG", "WEBP"):
        kw["xmp"] = meta.xmp
    if fmt == "JPEG":
        kw.update(quality=quality, subsampling=0, optimize=True)
    elif fmt == "WEBP":
        kw.update(quality=quality, method=4)
    elif fmt == "PNG":
        kw.update(compress_level=6)
        if meta.xmp:
            from PIL.PngImagePlugin import PngInfo

            info = PngInfo()
            info.add_itxt("XML:com.adobe.xmp", meta.xmp.decode("utf-8", "replace"))
            kw["pnginfo"] = info
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue(), warnings


def _encode_tiff(pixels: np.ndarray, meta: ImageMeta, exif: bytes | None) -> tuple[bytes, list[str]]:
    """TIFF through tifffile (it keeps more than Pillow: any bit depth and channel count, deflate compression):
    ICC (34675), XMP (700), resolution, the descriptive IFD0 tags of the source's EXIF (make, model, dates,
    artist, copyright, software, IPTC, Photoshop resources) and its Exif and GPS sub-IFDs (``io.exif``)."""
    import tifffile

    from facerest_cli.io.exif import add_exif_ifds, tiff_exif_tags

    c = pixels.shape[2]
    data = pixels[:, :, 0] if c == 1 else (pixels[:, :, ::-1] if c == 3 else pixels[:, :, [2, 1, 0, 3]] if c == 4 else pixels)
    extratags = []
    if meta.icc_profile:
        extratags.append((34675, "B", len(meta.icc_profile), meta.icc_profile, True))
    if meta.xmp:
        extratags.append((700, "B", len(meta.xmp), meta.xmp, True))
    exif_tags, software = tiff_exif_tags(exif)
    extratags += exif_tags
    kw: dict = {}
    if meta.dpi:
        kw["resolution"] = (meta.dpi[0], meta.dpi[1])
        kw["resolutionunit"] = "INCH"
    photometric = "minisblack" if c in (1, 2) else "rgb"
    extrasamples = None
    if c in (2, 4):
        extrasamples = ("unassalpha",)
    buf = io.BytesIO()
    tifffile.imwrite(
        buf,
        np.ascontiguousarray(data),
        photometric=photometric,
        extrasamples=extrasamples,
        compression="zlib",
        extratags=extratags,
        metadata=None,
        software=software or False,  # the source's, never "tifffile.py"
        **kw,
    )
    return add_exif_ifds(buf.getvalue(), exif)


class ImageSink:
    """Writes one processed image file (the ``FrameSink`` for image inputs)."""

    def __init__(self, path: Path, fmt: str, quality: int = 95):
        self.path = Path(path)
        self.fmt = fmt
        self.quality = quality
        self.warnings: list[str] = []
        self._written = False

    @property
    def writes_bands(self) -> bool:
        """TIFF and PNG are written as the rows arrive (``upsample.stream``): a band-produced output
        (``blend.compose.BandImage``) is then never held whole. Other formats' encoders need the whole image."""
        from facerest_cli.upsample.stream import STREAMABLE_FORMATS

        return self.fmt in STREAMABLE_FORMATS

    def write(self, pixels, frame) -> None:
        """``pixels``: ``(H, W, C)`` as decoded (dtype, channels), or a ``blend.compose.BandImage`` of that layout;
        ``frame.image.meta`` is the metadata to carry (the same in both cases)."""
        if not isinstance(pixels, np.ndarray):
            if self.writes_bands:
                self._write_bands(pixels, frame.image.meta)
                return
            pixels = pixels.array()  # JPEG, WebP, BMP: one integer array (never float), then the usual encoder
        data, self.warnings = encode_image(pixels, self.fmt, frame.image.meta, self.quality)
        atomic_write_bytes(self.path, data)
        self._written = True

    def _write_bands(self, image, meta: ImageMeta) -> None:
        from facerest_cli.upsample.stream import write_png_stream, write_tiff_stream

        writer = write_tiff_stream if self.fmt == "TIFF" else write_png_stream
        self.warnings = writer(self.path, image, image.shape, image.dtype, icc_profile=meta.icc_profile, dpi=meta.dpi,
                               xmp=meta.xmp, exif=_exif_upright(meta.exif))
        self._written = True

    def finish(self) -> list[str]:
        return [str(self.path)] if self._written else []

    def abort(self) -> None:
        """Nothing to undo: the only write is atomic, so there is no partial file."""


class PreserveTimes:
    """A sink step for ``--preserve-times``: once the wrapped sink has finished, each output gets its input's
    access and modification times. Wraps any ``FrameSink``; everything else passes through."""

    def __init__(self, sink, source: Path):
        self.sink = sink
        self.source = Path(source)

    def __getattr__(self, name: str):
        return getattr(self.sink, name)

    def write(self, pixels: np.ndarray, frame) -> None:
        self.sink.write(pixels, frame)

    def finish(self) -> list[str]:
        outs = self.sink.finish()
        st = os.stat(self.source)
        for o in outs:
            os.utime(o, ns=(st.st_atime_ns, st.st_mtime_ns))
        return outs

    def abort(self) -> None:
        self.sink.abort()


class CropSaver:
    """``--save-crops``: the aligned input and restored crop of every face as PNGs under ``OUT/faces/``, written
    atomically; the paths go into the face's report record."""

    def __init__(self, out_dir: Path):
        self.root = Path(out_dir) / "faces"

    def save(self, rel_path: Path, frame_index: int | None, faces) -> None:
        """``faces``: the frame's ``FaceState``s (restored crops set). ``frame_index`` for video frames."""
        import cv2

        folder = self.root / Path(rel_path).parent
        stem = Path(rel_path).stem + (f"_f{frame_index:06d}" if frame_index is not None else "")
        for f in faces:
            pairs = (("input", to_uint8(f.crop)), ("restored", from_float(f.restored, np.uint8)))
            for tag, arr in pairs:
                path = folder / f"{stem}_face{f.face.index:02d}_{tag}.png"
                ok, buf = cv2.imencode(".png", arr)
                if not ok:
                    raise FacerestError(f"could not encode crop {path}")
                atomic_write_bytes(path, buf.tobytes())
                setattr(f.record, f"{tag}_crop", str(path))

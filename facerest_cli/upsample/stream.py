"""Consumers of output bands (``tiling.Band``): the whole image in memory, or a file written as the bands arrive.

Which output formats stream (peak memory independent of the image size):

* **TIFF**: strips, each deflate-compressed as it arrives (tifffile writes the strip table at the end);
  any bit depth and channel count. :func:`write_tiff_stream`.
* **PNG**: our own streaming encoder (IHDR, zlib-compressed IDAT chunks fed row by row, IEND); 8/16-bit gray,
  gray+alpha, RGB, RGBA. :func:`write_png_stream`.
* **JPEG, WebP, BMP** do not: their encoders (Pillow/OpenCV) take a whole image, so the bands are collected into
  one full-size **uint8/uint16** array (:func:`collect_bands`, the input's dtype; never float) and encoded after.

Files are written through ``io.sinks.atomic_open``: a temp file renamed into place, so a failed run leaves no
partial output. Metadata: the same as the whole-image encoders (``io.sinks.encode_image``) keep: ICC profile, DPI,
XMP and EXIF (PNG: an ``eXIf`` chunk; TIFF: the descriptive IFD0 tags, and the Exif/GPS sub-IFDs appended after
the image with ``io.exif.append_exif_ifds``, which reads back only the header and IFD0). EXIF is passed as it
should be written (orientation already reset by the caller).

:func:`resize_bands` streams a resize for an ``--upscale`` that differs from the network scale: area averaging
when shrinking, Lanczos-4 when enlarging, computed a band at a time. :func:`paste_faces_bands` pastes the restored
faces into the stream, so a 100-megapixel scan with faces never exists as one output array.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

from facerest_cli.upsample.tiling import Band

if TYPE_CHECKING:
    from facerest_cli.blend.paste import PasteItem

STREAMABLE_FORMATS = ("TIFF", "PNG")


def _as3d(a: np.ndarray) -> np.ndarray:
    return a[:, :, None] if a.ndim == 2 else a


def collect_bands(bands: Iterable[Band], shape: tuple[int, ...], dtype) -> np.ndarray:
    """Assemble bands into one ``shape`` array of ``dtype`` (checks that every row arrives exactly once)."""
    out = np.empty(shape, dtype)
    y = 0
    for b in bands:
        if b.y != y:
            raise ValueError(f"band starts at row {b.y}, expected {y}")
        out[b.y : b.y + len(b.pixels)] = b.pixels
        y += len(b.pixels)
    if y != shape[0]:
        raise ValueError(f"bands covered {y} of {shape[0]} rows")
    return out


def _rechunk(bands: Iterable[Band], rows: int) -> Iterator[np.ndarray]:
    """Re-cut bands of any height into blocks of exactly ``rows`` rows (the last may be shorter)."""
    buf: list[np.ndarray] = []
    have = 0
    y = 0
    for b in bands:
        if b.y != y:
            raise ValueError(f"band starts at row {b.y}, expected {y}")
        y += len(b.pixels)
        buf.append(b.pixels)
        have += len(b.pixels)
        while have >= rows:
            block = np.concatenate(buf) if len(buf) > 1 else buf[0]
            yield block[:rows]
            rest = block[rows:]
            buf, have = ([rest] if len(rest) else []), len(rest)
    if have:
        yield np.concatenate(buf) if len(buf) > 1 else buf[0]


def _to_file_order(block: np.ndarray) -> np.ndarray:
    """BGR(A) -> RGB(A); gray and gray+alpha unchanged."""
    b = _as3d(block)
    c = b.shape[2]
    if c == 3:
        return b[:, :, ::-1]
    if c == 4:
        return b[:, :, [2, 1, 0, 3]]
    return b


class _Unnamed:
    """A seekable binary file without ``name``: tifffile takes a file descriptor's integer ``name`` for a path."""

    def __init__(self, f):
        self._f = f

    def write(self, b) -> int:
        return self._f.write(b)

    def seek(self, *args) -> int:
        return self._f.seek(*args)

    def tell(self) -> int:
        return self._f.tell()

    def flush(self) -> None:
        self._f.flush()

    def seekable(self) -> bool:
        return True


def write_tiff_stream(path: Path | str, bands: Iterable[Band], shape: tuple[int, ...], dtype, *,
                      icc_profile: bytes | None = None, dpi: tuple[float, float] | None = None,
                      xmp: bytes | None = None, exif: bytes | None = None,
                      level: int = 6, rows_per_strip: int | None = None) -> list[str]:
    """Write a deflate-compressed, horizontally-predicted strip TIFF from bands (``shape`` = full output shape).
    Returns warnings (EXIF parts that could not be carried)."""
    import tifffile

    from facerest_cli.io.exif import append_exif_ifds, tiff_exif_tags
    from facerest_cli.io.sinks import atomic_open

    h, w = shape[0], shape[1]
    c = 1 if len(shape) == 2 else shape[2]
    dtype = np.dtype(dtype)
    row_bytes = w * c * dtype.itemsize
    rps = rows_per_strip or max(1, min(h, (1 << 20) // max(1, row_bytes)))  # ~1 MB strips

    def strips() -> Iterator[bytes]:
        for block in _rechunk(bands, rps):
            a = np.ascontiguousarray(_to_file_order(block), dtype.newbyteorder("<"))
            # TIFF predictor 2: per-sample difference with the pixel to the left (wraps modulo 2^bits).
            d = a.copy()
            d[:, 1:] -= a[:, :-1]
            yield zlib.compress(d.tobytes(), level)

    extratags = []
    if icc_profile:
        extratags.append((34675, "B", len(icc_profile), icc_profile, True))
    if xmp:
        extratags.append((700, "B", len(xmp), xmp, True))
    exif_tags, software = tiff_exif_tags(exif)
    extratags += exif_tags
    kw: dict = {}
    if dpi:
        kw.update(resolution=(dpi[0], dpi[1]), resolutionunit="INCH")
    tshape = (h, w) if c == 1 else (h, w, c)
    with atomic_open(Path(path), readable=bool(exif)) as f:
        tifffile.imwrite(
            _Unnamed(f), data=strips(), shape=tshape, dtype=dtype, byteorder="<",
            photometric="minisblack" if c in (1, 2) else "rgb",
            extrasamples=("unassalpha",) if c in (2, 4) else None,
            compression="zlib", predictor=2, rowsperstrip=rps, extratags=extratags, metadata=None,
            software=software or False, **kw,
        )
        warnings = append_exif_ifds(f, exif)
    return warnings


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def write_png_stream(path: Path | str, bands: Iterable[Band], shape: tuple[int, ...], dtype, *,
                     icc_profile: bytes | None = None, dpi: tuple[float, float] | None = None,
                     xmp: bytes | None = None, exif: bytes | None = None, level: int = 6) -> list[str]:
    """Write a PNG from bands without holding the image: rows are filtered ("Up", type 2) and fed to one zlib
    stream; each ~1 MB of compressed output becomes an IDAT chunk."""
    from facerest_cli.io.sinks import atomic_open

    h, w = shape[0], shape[1]
    c = 1 if len(shape) == 2 else shape[2]
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise ValueError(f"PNG holds uint8 or uint16 samples, got {dtype}")
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    depth = 8 * dtype.itemsize
    comp = zlib.compressobj(level)
    with atomic_open(Path(path)) as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)))
        if icc_profile:
            f.write(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
        if dpi:
            ppm = [int(round(d / 0.0254)) for d in dpi]
            f.write(_png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
        if exif:
            f.write(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
        if xmp:
            f.write(_png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp))
        prev = np.zeros(w * c * dtype.itemsize, np.uint8)
        out = bytearray()
        y = 0
        for b in bands:
            if b.y != y:
                raise ValueError(f"band starts at row {b.y}, expected {y}")
            y += len(b.pixels)
            raw = np.ascontiguousarray(_to_file_order(b.pixels), dtype.newbyteorder(">"))
            raw = raw.reshape(len(raw), -1).view(np.uint8)
            up = np.empty((len(raw), raw.shape[1] + 1), np.uint8)
            up[:, 0] = 2  # filter type Up: byte minus the byte above (mod 256)
            up[0, 1:] = raw[0] - prev
            up[1:, 1:] = raw[1:] - raw[:-1]
            prev = raw[-1].copy()
            out += comp.compress(up.tobytes())
            if len(out) >= 1 << 20:
                f.write(_png_chunk(b"IDAT", bytes(out)))
                out = bytearray()
        if y != h:
            raise ValueError(f"bands covered {y} of {h} rows")
        out += comp.flush()
        f.write(_png_chunk(b"IDAT", bytes(out)))
        f.write(_png_chunk(b"IEND", b""))
    return []


def _lanczos4(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return np.where(ax < 4, np.sinc(x) * np.sinc(x / 4.0), 0.0)


def _vertical_weights(v0: int, v1: int, n_in: int, n_out: int) -> tuple[int, int, np.ndarray]:
    """Output rows ``[v0, v1)`` as a ``(v1-v0, i1-i0)`` matrix over input rows ``[i0, i1)`` (float64).

    Shrinking: the exact area average (a box of ``n_in / n_out`` input rows with fractional ends). Enlarging:
    Lanczos-4 around the source position ``(v + 0.5) * n_in / n_out - 0.5``, border rows replicated."""
    r = n_in / n_out
    if n_out < n_in:
        lo = [v * r for v in range(v0, v1)]
        i0, i1 = int(math.floor(lo[0])), min(n_in, int(math.ceil((v1) * r)))
        m = np.zeros((v1 - v0, i1 - i0))
        for j, a in enumerate(lo):
            b = a + r
            for i in range(int(math.floor(a)), min(n_in, int(math.ceil(b)))):
                m[j, i - i0] = (min(b, i + 1) - max(a, i)) / r
        return i0, i1, m
    src = (np.arange(v0, v1) + 0.5) * r - 0.5
    base = np.floor(src).astype(int)
    i0, i1 = max(0, int(base.min()) - 3), min(n_in, int(base.max()) + 5)
    m = np.zeros((v1 - v0, i1 - i0))
    for j, (sp, bi) in enumerate(zip(src, base)):
        taps = np.arange(bi - 3, bi + 5)
        wts = _lanczos4(sp - taps)
        wts /= wts.sum()
        for t, wt in zip(np.clip(taps, 0, n_in - 1), wts):
            m[j, t - i0] += wt
    return i0, i1, m


def resize_bands(bands: Iterable[Band], in_hw: tuple[int, int], out_hw: tuple[int, int], dtype,
                 chunk: int = 64) -> Iterator[Band]:
    """Resize a band stream of an ``in_hw`` image to ``out_hw`` without holding either image.

    Each incoming band is resized horizontally at once (rows are independent: ``cv2.resize`` INTER_AREA when
    shrinking, INTER_LANCZOS4 when enlarging, on float32); output rows are then formed ``chunk`` at a time from the
    buffered rows they need (:func:`_vertical_weights`), rounded and clipped to ``dtype``.
    """
    import cv2

    (h_in, w_in), (h_out, w_out) = in_hw, out_hw
    dtype = np.dtype(dtype)
    maxval = np.iinfo(dtype).max
    interp = cv2.INTER_AREA if w_out < w_in else cv2.INTER_LANCZOS4
    buf: list[np.ndarray] = []
    b0 = 0  # input row of buf[0][0]
    have = 0  # input rows received
    v = 0
    squeeze = None
    for b in bands:
        px = b.pixels
        squeeze = px.ndim == 2
        row = cv2.resize(_as3d(px).astype(np.float32), (w_out, len(px)), interpolation=interp)
        buf.append(_as3d(row))
        have += len(px)
        while v < h_out:
            v1 = min(h_out, v + chunk)
            i0, i1, m = _vertical_weights(v, v1, h_in, h_out)
            if i1 > have:
                break
            slab = np.concatenate(buf) if len(buf) > 1 else buf[0]
            part = slab[i0 - b0 : i1 - b0]
            out = np.tensordot(m.astype(np.float32), part, axes=(1, 0))
            out = np.clip(np.rint(out), 0, maxval).astype(dtype)
            yield Band(v, out[:, :, 0] if squeeze else out)
            v = v1
            # keep only what the next chunk can need (its window starts at or after this one's, minus taps)
            keep_from = max(b0, i0 - 8)
            buf, b0 = [slab[keep_from - b0 :]], keep_from
    if v != h_out:
        raise ValueError(f"resize got {have} of {h_in} input rows and produced {v} of {h_out}")


def paste_faces_bands(bands: Iterable[Band], items: Sequence["PasteItem"], size_hw: tuple[int, int]) -> Iterator[Band]:
    """Paste faces (``blend.paste.PasteItem``, matrices in output-canvas coordinates) into a band stream.

    Faces whose paste rectangles share rows are grouped; a group is pasted (``blend.paste.paste_faces``, larger
    faces first, ``--detail keep`` included) once every row of its rectangles has arrived, and rows are passed on
    as soon as no pending group needs them. Memory: the tallest group's rows plus one band, never the image.
    The result equals ``paste_faces`` on the whole canvas (up to float rounding of the shifted matrices).
    """
    from facerest_cli.align.warp import crop_roi
    from facerest_cli.blend.paste import PasteItem, paste_faces

    h, w = size_hw
    spans = []
    for it in items:
        roi = crop_roi(it.matrix, it.restored.shape[0], (h, w))
        if roi is not None:
            spans.append((roi[1], roi[3], it))
    spans.sort(key=lambda t: t[0])
    groups: list[list] = []  # [y0, y1, items]
    for y0, y1, it in spans:
        if groups and y0 < groups[-1][1]:
            groups[-1][1] = max(groups[-1][1], y1)
            groups[-1][2].append(it)
        else:
            groups.append([y0, y1, [it]])
    buf: np.ndarray | None = None
    start = 0  # canvas row of buf[0]
    for b in bands:
        if b.y != start + (0 if buf is None else len(buf)):
            raise ValueError(f"band starts at row {b.y}, expected {start + (0 if buf is None else len(buf))}")
        buf = b.pixels if buf is None or len(buf) == 0 else np.concatenate([buf, b.pixels])
        end = start + len(buf)
        while groups and groups[0][1] <= end:
            g0, g1, its = groups.pop(0)
            slab = _as3d(buf[g0 - start : g1 - start])
            shifted = []
            for it in its:
                m = np.asarray(it.matrix, np.float64).copy()
                m[:, 2] += m[:, 1] * g0  # slab row r is canvas row r + g0
                shifted.append(PasteItem(it.restored, m, it.mask, gray=it.gray, detail=it.detail))
            pasted = paste_faces(slab, shifted)
            buf[g0 - start : g1 - start] = pasted if buf.ndim == 3 else pasted[:, :, 0]
        ready = min(end, groups[0][0]) if groups else end
        if ready > start:
            yield Band(start, buf[: ready - start].copy())
            buf = buf[ready - start :]
            start = ready
    if groups or (buf is not None and len(buf)):
        raise ValueError(f"band stream ended at row {start + (0 if buf is None else len(buf))} of {h}")

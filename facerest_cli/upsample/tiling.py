"""Our default tiler: overlapping tiles blended with a smooth window, streamed band by band.

Why not the official tiling: ``RealESRGANer`` cuts the image into tiles, runs each with ``tile_pad`` pixels of
context and writes each core once. The network's receptive field is far larger than any practical ``tile_pad``, so
neighbouring cores disagree at their common edge and a seam shows (on the golden image at tile_pad 4, 12.7 % of
the uint8 values differ from the untiled output, by up to 54 levels).

Here every tile is blended into the output with a separable weight ``w_y(y) * w_x(x)``:

* per axis, the image is split into ``n = ceil(L / tile)`` equal cores; around each inner core boundary ``b`` a
  blend band ``[b - overlap/2, b + overlap/2)`` (input pixels) hands over from one tile to the next with a
  raised-cosine ramp ``f(t) = sin^2(pi t / 2)``. ``f(t) + f(1 - t) = 1``, so the weights of all tiles sum to 1
  at every output pixel (a constant image stays constant) and the hand-over has no step: there is no seam at
  any ``tile_pad``, even 0;
* each tile's input window also extends ``tile_pad`` pixels beyond its blend band; those pixels are context
  only (weight 0), so every output pixel a tile contributes to has at least ``tile_pad`` pixels of real context
  and the heavily weighted ones have ``tile_pad + overlap/2`` or more;
* at the image border no context is needed (the untiled network sees the same border), windows are shifted
  inward instead of clipped, so every tile of an image has the same input size and tiles are batched into one
  network call (``batch_size``, capped by ``max_call_pixels`` of output per call).

Cost: each tile reads ``tile + overlap + 2*tile_pad`` input pixels per side for ``tile`` of output, e.g.
``(256 + 16 + 20)^2 / 256^2 = 1.30x`` the untiled FLOPs at the defaults (the official tiling at tile 400,
tile_pad 10 costs ``1.10x``; at tile 64 ``1.72x``).

Memory: the output is produced one row of tiles at a time. A float32 accumulator holds only the rows the current
row of tiles touches (``scale * (tile + overlap + 2*tile_pad)`` rows of the output width), finished rows are
converted to the image's integer type and handed to the consumer as a :class:`Band`; no full-size float copy of
the input or the output is ever made. The input is read tile by tile (mod padding is virtual: reflected indices).

Pixel conventions: input ``(H, W)``/``(H, W, 1)`` gray, ``(H, W, 2)`` gray+alpha, ``(H, W, 3)`` BGR or
``(H, W, 4)`` BGRA, uint8 or uint16 (the dtype decides the range, not the maximum value as in the official code).
Gray (one channel, or B = G = R everywhere) runs through the network as 3 equal channels and comes back as luma
(0.299 R + 0.587 G + 0.114 B), in every colour channel of the input, so a grayscale photo stays grayscale; alpha is
upscaled separately through the network as a gray image, as ``RealESRGANer`` does. Output bands keep the input's
layout and dtype: ``(rows, W * scale[, C])``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple, Protocol

import numpy as np

from facerest_cli.errors import UsageError

_LUMA_RGB = np.array([0.299, 0.587, 0.114], np.float32)


class TileNet(Protocol):
    """What the tiler needs from a network (``UpsamplerNet`` is one)."""

    scale: int
    align: int

    def run(self, x: np.ndarray) -> np.ndarray:  # (N, 3, h, w) float32 RGB [0,1] -> (N, 3, h*s, w*s) float32
        ...


@dataclass(frozen=True)
class TileConfig:
    """``tile``: core size in input pixels (0 = the whole image in one call). ``tile_pad``: context pixels on
    each side that get weight 0. ``overlap``: width of the blend band between neighbouring tiles (input pixels;
    0 gives hard edges like the official tiler). ``batch_size``: tiles per network call, lowered so that one call
    produces at most ``max_call_pixels`` output pixels (activation memory grows with it: RRDBNet's last layers
    hold several 64-channel float32 maps at the output resolution, 256 bytes per output pixel each)."""

    tile: int = 256
    tile_pad: int = 10
    overlap: int = 16
    batch_size: int = 4
    max_call_pixels: int = 1 << 21

    def __post_init__(self):
        if self.tile < 0 or self.tile_pad < 0 or self.overlap < 0 or self.batch_size < 1:
            raise UsageError(f"tile, tile_pad, overlap must be >= 0 and batch_size >= 1, got {self}")
        if 0 < self.tile < 8:
            raise UsageError(f"--tile must be 0 (no tiling) or at least 8 pixels, got {self.tile}")


class Band(NamedTuple):
    """Finished output rows ``[y, y + len(pixels))``: ``(rows, W_out[, C])`` in the input's dtype and layout."""

    y: int
    pixels: np.ndarray


@dataclass(frozen=True)
class AxisTile:
    """One tile along one axis: input window ``[start, end)`` (padded coordinates) and the blend weight of each
    output position ``[scale * start, scale * end)`` (float32, zero within ``tile_pad`` of an inner edge)."""

    start: int
    end: int
    weights: np.ndarray


def _ramp(t: np.ndarray) -> np.ndarray:
    # sin^2 rises from 0 to 1 with zero slope at both ends, and ramp(t) + ramp(1 - t) == 1.
    return np.sin(0.5 * np.pi * np.clip(t, 0.0, 1.0)) ** 2


def axis_plan(length: int, tile: int, tile_pad: int, overlap: int, align: int, scale: int) -> list[AxisTile]:
    """Split one axis of ``length`` (a multiple of ``align``) into blended tiles; see the module docstring."""
    if length % align:
        raise ValueError(f"axis length {length} is not a multiple of {align} (pad it first)")
    if tile <= 0 or length <= tile:
        return [AxisTile(0, length, np.ones(length * scale, np.float32))]
    n = math.ceil(length / tile)
    bounds = [round(k * length / n) for k in range(n + 1)]
    min_core = min(b1 - b0 for b0, b1 in zip(bounds, bounds[1:]))
    ov = min(overlap, min_core)  # blend bands must not reach into each other
    half = ov / 2.0
    needed = []
    for k in range(n):
        lo = 0 if k == 0 else max(0, math.floor(bounds[k] - half) - tile_pad)
        hi = length if k == n - 1 else min(length, math.ceil(bounds[k + 1] + half) + tile_pad)
        lo = lo // align * align
        hi = min(length, -(-hi // align) * align)
        needed.append((lo, hi))
    size = max(hi - lo for lo, hi in needed)
    plan = []
    for k, (lo, hi) in enumerate(needed):
        start = min(lo, length - size)  # shift inward at the far border: same size for every tile (batchable)
        end = start + size
        x = (np.arange(start * scale, end * scale, dtype=np.float64) + 0.5) / scale  # output centres, input units
        w = np.ones_like(x)
        if k > 0:
            b = bounds[k]
            w *= _ramp((x - (b - half)) / ov) if ov > 0 else (x >= b)
        if k < n - 1:
            b = bounds[k + 1]
            w *= 1.0 - _ramp((x - (b - half)) / ov) if ov > 0 else (x < b)
        plan.append(AxisTile(start, end, w.astype(np.float32)))
    return plan


def _reflect_index(start: int, end: int, n: int) -> np.ndarray | slice:
    """Indices ``start..end-1`` into an axis of ``n`` real pixels; positions >= n mirror back (numpy 'reflect',
    as the official mod pad), so the padded image never exists in memory."""
    if end <= n:
        return slice(start, end)
    idx = np.arange(start, end)
    if n == 1:
        return np.zeros_like(idx)
    return np.where(idx < n, idx, 2 * (n - 1) - idx)


def _layout(img: np.ndarray) -> tuple[np.ndarray, int, bool, bool]:
    """-> (H, W, C) view, max value, gray?, alpha?  A colour image whose B, G and R are equal everywhere is a
    grayscale photo: it is processed as gray and comes back with equal channels (the network alone would tint it)."""
    if img.dtype == np.uint8:
        maxval = 255
    elif img.dtype == np.uint16:
        maxval = 65535
    else:
        raise UsageError(f"upsampling needs a uint8 or uint16 image, got {img.dtype}")
    x = img[:, :, None] if img.ndim == 2 else img
    if x.ndim != 3 or x.shape[2] not in (1, 2, 3, 4):
        raise UsageError(f"upsampling needs (H, W) or (H, W, 1|2|3|4) pixels, got {img.shape}")
    c = x.shape[2]
    return x, maxval, c in (1, 2) or _equal_channels(x), c in (2, 4)


def _equal_channels(x: np.ndarray, rows: int = 256) -> bool:
    """B == G == R everywhere, checked a band of rows at a time (stops at the first colour band; no full-size
    temporary)."""
    for y in range(0, x.shape[0], rows):
        b = x[y : y + rows]
        if not (np.array_equal(b[:, :, 0], b[:, :, 1]) and np.array_equal(b[:, :, 1], b[:, :, 2])):
            return False
    return True


def upscale_bands(img: np.ndarray, net: TileNet, cfg: TileConfig = TileConfig(),
                  progress: Callable[[int, int], None] | None = None) -> Iterator[Band]:
    """Upscale ``img`` by ``net.scale``, yielding finished output :class:`Band` s from top to bottom.

    ``progress(done_tiles, total_tiles)`` is called after every network call.
    """
    src, maxval, gray, has_alpha = _layout(img)
    h, w, c = src.shape
    s, align = int(net.scale), int(net.align)
    hp, wp = -(-h // align) * align, -(-w // align) * align
    rows = axis_plan(hp, cfg.tile, cfg.tile_pad, cfg.overlap, align, s)
    cols = axis_plan(wp, cfg.tile, cfg.tile_pad, cfg.overlap, align, s)
    sy, sx = rows[0].end - rows[0].start, cols[0].end - cols[0].start
    per_tile = s * s * sy * sx
    bs = max(1, min(cfg.batch_size, cfg.max_call_pixels // per_tile))
    planes = 2 if has_alpha else 1  # colour (or gray) and alpha each go through the network
    total = len(rows) * len(cols) * planes
    done = 0
    w_out, h_out = w * s, h * s
    # Divide (not multiply by 1/maxval): the same float32 values as RealESRGANer's ``img / max_range``.
    div = np.float32(maxval)
    p0, pending = 0, np.zeros((0, wp * s, 3 * planes), np.float32)
    for k, rt in enumerate(rows):
        ys, ye = rt.start * s, rt.end * s
        acc = np.zeros((ye - p0, wp * s, 3 * planes), np.float32)
        acc[: len(pending)] = pending
        ridx = _reflect_index(rt.start, rt.end, h)
        jobs = [(ct, p) for ct in cols for p in range(planes)]
        for j in range(0, len(jobs), bs):
            chunk = jobs[j : j + bs]
            x = np.empty((len(chunk), 3, sy, sx), np.float32)
            for i, (ct, p) in enumerate(chunk):
                t = src[ridx, :][:, _reflect_index(ct.start, ct.end, w)]
                if p == 1:  # alpha, as a gray image
                    x[i] = t[:, :, -1].astype(np.float32) / div
                elif gray:  # one channel (or three equal ones) as the official 'L' mode: GRAY2RGB
                    x[i] = t[:, :, 0].astype(np.float32) / div
                else:
                    x[i] = np.moveaxis(t[:, :, 2::-1], 2, 0).astype(np.float32) / div  # BGR -> RGB, CHW
            y = net.run(x)
            if y.shape != (len(chunk), 3, sy * s, sx * s):
                raise ValueError(f"upsampler returned {y.shape} for tiles {x.shape} at scale {s}")
            r0 = max(ys, p0)  # rows above p0 were emitted already; this tile's weight there is 0
            wy = rt.weights[r0 - ys :]
            for i, (ct, p) in enumerate(chunk):
                wgt = wy[:, None] * ct.weights[None, :]
                part = np.moveaxis(y[i, :, r0 - ys :, :], 0, 2) * wgt[:, :, None]
                acc[r0 - p0 : ye - p0, ct.start * s : ct.end * s, 3 * p : 3 * p + 3] += part
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        if k + 1 < len(rows):
            nxt = rows[k + 1]
            finish = nxt.start * s + int(np.argmax(nxt.weights > 0))
        else:
            finish = hp * s
        finish = max(p0, min(finish, hp * s))
        if finish > p0:
            stop = min(finish, h_out)
            if stop > p0:
                yield Band(p0, _finish(acc[: stop - p0, :w_out], maxval, img.dtype, gray, has_alpha, img.ndim, c))
            pending = acc[finish - p0 :].copy()
            p0 = finish
        else:
            pending = acc
    if p0 < h_out:  # cannot happen with a consistent plan; a silent gap would corrupt the image
        raise AssertionError(f"tiler stopped at output row {p0} of {h_out}")


def _finish(acc: np.ndarray, maxval: int, dtype, gray: bool, has_alpha: bool, ndim: int, channels: int) -> np.ndarray:
    """Float accumulator rows (RGB[, alpha as RGB]) -> integer pixels in the input's layout.

    Works in place on ``acc`` (its rows are final), so the only new array is the integer band itself."""
    np.clip(acc, 0.0, 1.0, out=acc)
    rows, width = acc.shape[:2]
    out = np.empty((rows, width, channels), dtype)
    color_ch = channels - (1 if has_alpha else 0)
    scale = np.float32(maxval)
    if gray:
        v = acc[:, :, 0:3] @ _LUMA_RGB  # as cv2 BGR2GRAY on the clamped float image
        v *= scale
        out[:, :, 0:color_ch] = np.rint(v, out=v)[:, :, None]
    else:
        col = acc[:, :, 0:3]
        col *= scale
        out[:, :, 0:3] = np.rint(col, out=col)[:, :, ::-1]  # RGB -> BGR; values are integral, the cast is exact
    if has_alpha:
        a = acc[:, :, 3:6] @ _LUMA_RGB
        a *= scale
        out[:, :, -1] = np.rint(a, out=a)
    return out[:, :, 0] if ndim == 2 else out


def upscale_image(img: np.ndarray, net: TileNet, cfg: TileConfig = TileConfig()) -> np.ndarray:
    """The whole upscaled image in memory (for formats whose writer needs it; see ``stream``)."""
    from facerest_cli.upsample.stream import collect_bands

    s = int(net.scale)
    shape = (img.shape[0] * s, img.shape[1] * s, *img.shape[2:])
    return collect_bands(upscale_bands(img, net, cfg), shape, img.dtype)

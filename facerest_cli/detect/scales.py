"""Where to run a detector on an image: a pyramid of passes, each tiled where the image is large.

Face detectors are trained on faces of roughly 12-300 pixels at their input (``RawSpec``); run once at one scale
they miss small faces or split large ones into parts (an eye, a chin). ``plan_passes`` lays out levels from a
coarse one, where a face filling the whole frame is ``spec.face_max`` pixels, to the finest one (full resolution,
or less: ``max_side`` and the image's real detail, ``detail_scale``), at most ``MAX_STEP`` apart, so every face
size is seen mid-range by some level. Each level is trusted only for the face sizes it is responsible for
(``Pass.accept``): the coarsest takes every large face, a finer one only faces too small for the level above it
(with a ``OVERLAP`` factor of sizes seen by both), so a large face's eye seen "as a face" by a fine level is
ignored when it is larger than what that level is for. Tiles overlap by more than the largest face a level keeps,
so every such face lies whole in some tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from facerest_cli.detect.base import RawSpec

MAX_STEP = 4.0  # scale ratio between neighbouring levels
OVERLAP = 3.0  # a finer level keeps faces up to OVERLAP x the smallest face the level above finds reliably
SINGLE_PASS_SLACK = 1.25  # a dynamic-input detector runs untiled up to this x its tile side


@dataclass(frozen=True)
class Pass:
    """One pyramid level: the image resized by ``scale`` (pass pixels per image pixel) to ``size`` ``(w, h)``,
    cut into ``tiles`` ``(x0, y0, x1, y1)`` (pass pixels); keeps faces of ``accept`` ``(lo, hi)`` image pixels."""

    scale: float
    size: tuple[int, int]
    tiles: tuple[tuple[int, int, int, int], ...]
    accept: tuple[float, float]


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / max(1, tile - overlap))
    return sorted({int(round(v)) for v in np.linspace(0, length - tile, n)})


def plan_passes(h: int, w: int, spec: RawSpec, *, max_side: int = 0, detail_scale: float = 1.0) -> list[Pass]:
    """The passes for an ``h`` x ``w`` image, coarsest first. ``max_side`` > 0 caps the finest level's longer
    side (``--det-size``); ``detail_scale`` <= 1 caps its scale where the image holds no finer detail."""
    longer = max(h, w)
    fine = min(1.0, detail_scale)
    if max_side > 0:
        fine = min(fine, max_side / longer)
    coarse = min(fine, spec.face_max / longer)
    n = 1 if fine <= coarse * 1.0001 else 1 + math.ceil(math.log(fine / coarse) / math.log(MAX_STEP) - 1e-9)
    scales = [coarse * (fine / coarse) ** (k / (n - 1)) for k in range(n - 1)] + [fine] if n > 1 else [fine]
    passes = []
    for k, s in enumerate(scales):
        hi = math.inf if k == 0 else min(spec.face_max / s, OVERLAP * spec.face_min / scales[k - 1])
        lo = 0.0 if k == n - 1 else 0.75 * spec.face_min / s
        sw, sh = max(1, round(w * s)), max(1, round(h * s))
        if spec.fixed_input is not None:
            tw, th = spec.fixed_input
        else:
            single = spec.tile * SINGLE_PASS_SLACK
            tw, th = (sw, sh) if max(sw, sh) <= single else (spec.tile, spec.tile)
        # Overlap: a face this level keeps (up to hi) lies whole in some tile; boxes run a little past the face.
        ov = int(min(min(tw, th) // 2, math.ceil(min(hi, longer) * s * 1.3) + 8))
        xs = _starts(sw, tw, ov)
        ys = _starts(sh, th, ov)
        tiles = tuple((x, y, min(sw, x + tw), min(sh, y + th)) for y in ys for x in xs)
        passes.append(Pass(scale=s, size=(sw, sh), tiles=tiles, accept=(lo, hi)))
    return passes


def detail_scale(bgr: np.ndarray, *, min_pixels: int = 4_000_000, tolerance: float = 2.0, floor: float = 0.125) -> float:
    """The smallest scale (a power of 1/2, at least ``floor``) that keeps the image's detail; 1.0 for images under
    ``min_pixels`` (full resolution is cheap there) or with detail down to the pixel.

    An upscaled photo, or a scan at a resolution beyond the print's, has no content at its finest scales: there,
    a detection pass at full resolution sees the same faces as one at the scale returned, for a fraction of the
    cost. Test, from fine to coarse: shrink by 2 (area), enlarge back (bicubic); if the 99.5th percentile of
    32x32-block mean absolute differences is within ``tolerance`` grey levels, nothing was lost (measured: native
    photos lose 2-15 levels, bicubic x2 / x3 enlargements 0.5-1.9, see /work/notes/detect_results.md).
    """
    import cv2

    h, w = bgr.shape[:2]
    if h * w < min_pixels:
        return 1.0
    g = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 and bgr.shape[2] == 3 else bgr.reshape(h, w)
    scale = 1.0
    while scale / 2 >= floor and min(g.shape) >= 64:
        gh, gw = g.shape
        half = cv2.resize(g, (max(1, gw // 2), max(1, gh // 2)), interpolation=cv2.INTER_AREA)
        back = cv2.resize(half, (gw, gh), interpolation=cv2.INTER_CUBIC)
        diff = cv2.absdiff(g, back)
        bh, bw = gh // 32, gw // 32
        blocks = diff[: bh * 32, : bw * 32].reshape(bh, 32, bw, 32).mean(axis=(1, 3))
        if float(np.percentile(blocks, 99.5)) > tolerance:
            break
        scale /= 2
        g = half
    return scale

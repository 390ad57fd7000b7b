"""Paste restored crops back into the frame.

Each face touches only the image rectangle its crop covers (no full-size float copies, so 250 MP scans stay
cheap). A pixel where every face mask is exactly 0 keeps its input value bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facerest_cli.align.warp import crop_roi, warp_from_crop
from facerest_cli.blend.color import to_gray


@dataclass(frozen=True)
class PasteItem:
    restored: np.ndarray  # (S, S, 3) float32 BGR in [0, 1]
    matrix: np.ndarray  # (2, 3) frame -> crop (frame = the output canvas, i.e. after --upscale)
    mask: np.ndarray  # (S, S) float32 in [0, 1], crop space
    gray: bool = False  # grayscale face: pasted as luma (R = G = B on a colour frame), no invented colour


def scale_matrix(m: np.ndarray, factor: float) -> np.ndarray:
    """Matrix for the same crop when the frame is resized by ``factor`` (pixel-centre convention)."""
    # frame' pixel p' = (p + 0.5) * f - 0.5  =>  p = (p' + 0.5) / f - 0.5
    m = np.asarray(m, np.float64)
    to_orig = np.array([[1 / factor, 0, 0.5 / factor - 0.5], [0, 1 / factor, 0.5 / factor - 0.5], [0, 0, 1]])
    return (np.vstack([m, [0, 0, 1]]) @ to_orig)[:2]


def paste_faces(frame: np.ndarray, items: list[PasteItem], coverage: np.ndarray | None = None) -> np.ndarray:
    """Blend every item into a copy of ``frame`` (``(H, W, C)`` uint8/uint16); returns the new frame.

    Larger faces are pasted first, so a smaller face overlapping a larger one's crop stays on top.
    ``coverage`` (``(H, W)`` float32, optional) accumulates the maximum mask value per pixel, for tests and
    debugging overlays.
    """
    out = frame.copy()
    if not items:
        return out
    maxval = 65535.0 if frame.dtype == np.uint16 else 255.0
    color_ch = 1 if frame.shape[2] in (1, 2) else 3
    order = sorted(items, key=lambda it: -_crop_pixels_in_frame(it.matrix))
    for it in order:
        s = it.restored.shape[0]
        roi = crop_roi(it.matrix, s, frame.shape[:2])
        if roi is None:
            continue
        x0, y0, x1, y1 = roi
        src = it.restored.astype(np.float32)
        if color_ch == 1:
            src = to_gray(src)
        elif it.gray:
            src = np.repeat(to_gray(src), 3, axis=2)
        warped = warp_from_crop(src * np.float32(maxval), it.matrix, roi)
        wmask = warp_from_crop(it.mask.astype(np.float32)[:, :, None], it.matrix, roi)[:, :, 0]
        np.clip(wmask, 0.0, 1.0, out=wmask)
        region = out[y0:y1, x0:x1, :color_ch]
        base = region.astype(np.float32)
        a = wmask[:, :, None]
        blended = np.clip(np.rint(a * warped + (1.0 - a) * base), 0, maxval).astype(frame.dtype)
        out[y0:y1, x0:x1, :color_ch] = np.where(a > 0, blended, region)
        if coverage is not None:
            np.maximum(coverage[y0:y1, x0:x1], wmask, out=coverage[y0:y1, x0:x1])
    return out


def _crop_pixels_in_frame(m: np.ndarray) -> float:
    det = abs(float(np.linalg.det(np.asarray(m)[:, :2])))
    return 1.0 / max(det, 1e-12)

"""Paste restored crops back into the frame.

Each face touches only the image rectangle its crop covers (no full-size float copies, so 250 MP scans stay
cheap). A pixel where every face mask is exactly 0 keeps its input value bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from facerest_cli.align.warp import crop_roi, warp_from_crop
from facerest_cli.blend.color import to_gray
from facerest_cli.blend.detail import face_is_larger_than_crop, warp_keep_detail
from facerest_cli.pixels import from_float, max_value

if TYPE_CHECKING:
    from facerest_cli.types import FaceState


@dataclass(frozen=True)
class PasteItem:
    restored: np.ndarray  # (S, S, 3) float32 BGR in [0, 1]
    matrix: np.ndarray  # (2, 3) frame -> crop (frame = the output canvas, i.e. after --upscale)
    mask: np.ndarray  # (S, S) float32 in [0, 1], crop space
    gray: bool = False  # grayscale face: pasted as luma (R = G = B on a colour frame), no invented colour
    # "keep": a face larger than the crop gets the frame's detail above the crop's Nyquist back (blend.detail);
    # "restored": the restored crop alone (the behaviour before --detail existed).
    detail: str = "restored"


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
    maxval = max_value(frame.dtype)
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
        if it.detail == "keep" and face_is_larger_than_crop(it.matrix):
            # The detail comes from the input frame (not ``out``): an overlapping face pasted earlier never leaks in.
            warped = warp_keep_detail(src * np.float32(maxval), frame, it.matrix, roi, channels=color_ch)
        else:
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


def upscale_frame(frame: np.ndarray, n: int) -> np.ndarray:
    """``--upscale N`` without a learned upsampler: Lanczos resize of the whole frame."""
    import cv2

    h, w = frame.shape[:2]
    up = cv2.resize(frame, (w * n, h * n), interpolation=cv2.INTER_LANCZOS4)
    return up[:, :, None] if up.ndim == 2 else up


def compose_frame(pixels: np.ndarray, faces: Sequence["FaceState"], feather: np.ndarray, upscale: int = 1,
                  detail: str = "keep") -> np.ndarray:
    """The output frame without a learned background: ``pixels`` (Lanczos-upscaled by ``upscale``) with every
    face's restored crop pasted through its mask (the crop-border ``feather`` mask where a face has none), with
    ``--detail`` ``detail``. The whole-photo options (``--bg-upsampler``, ``--compat``) are
    ``blend.compose.Composer``'s; this is its default path."""
    from facerest_cli.blend.compose import Composer
    from facerest_cli.config import BlendConfig

    return Composer(BlendConfig(upscale=upscale, detail=detail), feather).compose(pixels, faces)  # type: ignore[return-value]


def compose_aligned(pixels: np.ndarray, restored: np.ndarray, gray: bool) -> np.ndarray:
    """``--aligned``: the output is the restored crop itself, at the input's size, channels and depth."""
    import cv2

    h, w = pixels.shape[:2]
    r = restored
    if r.shape[:2] != (h, w):
        r = cv2.resize(r, (w, h), interpolation=cv2.INTER_AREA if r.shape[0] > h else cv2.INTER_CUBIC)
    color = to_gray(r) if pixels.shape[2] in (1, 2) else (np.repeat(to_gray(r), 3, axis=2) if gray else r)
    vals = from_float(color, pixels.dtype)
    out = pixels.copy()
    out[:, :, : vals.shape[2]] = vals
    return out

"""Colour handling: a grayscale face stays grayscale, optional colour statistics matching."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from facerest_cli.pixels import to_float, to_uint8

if TYPE_CHECKING:
    from facerest_cli.types import FaceState

# ITU-R BT.601 luma, as OpenCV's BGR2GRAY.
_LUMA_BGR = np.array([0.114, 0.587, 0.299], np.float32)


def is_gray(img: np.ndarray, tol: int = 0) -> bool:
    """True if every pixel of a BGR(A) image has B == G == R (within ``tol``)."""
    if img.ndim != 3 or img.shape[2] < 3:
        return True
    b, g, r = img[:, :, 0], img[:, :, 1], img[:, :, 2]
    if tol == 0:
        return bool(np.array_equal(b, g) and np.array_equal(g, r))
    b16, g16, r16 = (c.astype(np.int32) for c in (b, g, r))
    return bool(np.abs(b16 - g16).max() <= tol and np.abs(g16 - r16).max() <= tol)


def is_near_gray(crop: np.ndarray, tol: float = 3.0, quantile: float = 99.5) -> bool:
    """A face crop that is grayscale up to compression noise: the ``quantile`` of per-pixel channel spread is at
    most ``tol`` (8-bit levels). Tinted (sepia) and colour faces are not."""
    if crop.ndim != 3 or crop.shape[2] < 3:
        return True
    c = to_uint8(crop[:, :, :3]).astype(np.int32)
    spread = np.maximum(np.abs(c[:, :, 0] - c[:, :, 1]), np.abs(c[:, :, 1] - c[:, :, 2]))
    return float(np.percentile(spread, quantile)) <= tol


def to_gray(bgr: np.ndarray) -> np.ndarray:
    """``(..., 3)`` float BGR -> ``(..., 1)`` luma."""
    return (bgr[..., :3] @ _LUMA_BGR)[..., None].astype(bgr.dtype)


def match_color(restored: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Match per-channel mean and std of ``restored`` to ``reference`` (both ``(S, S, 3)`` float [0, 1]),
    measured inside ``mask`` if given. Fixes the colour cast some restorers add to old photos."""
    w = np.ones(restored.shape[:2], np.float32) if mask is None else mask.astype(np.float32)
    wsum = max(float(w.sum()), 1e-6)
    out = np.empty_like(restored)
    for c in range(restored.shape[2]):
        r, f = restored[..., c], reference[..., c]
        mr, mf = float((r * w).sum() / wsum), float((f * w).sum() / wsum)
        sr = float(np.sqrt(((r - mr) ** 2 * w).sum() / wsum)) + 1e-6
        sf = float(np.sqrt(((f - mf) ** 2 * w).sum() / wsum))
        out[..., c] = (r - mr) * (sf / sr) + mf
    return np.clip(out, 0.0, 1.0)


class ColorStage:
    """BatchStage: a grayscale face's restored crop is reduced to luma (no invented colour); with ``--color-fix``
    a colour face's restored crop gets the input crop's per-channel mean and std (inside the face)."""

    name = "color"
    retries = False  # may run in the write thread (BatchStage)
    needs: frozenset[str] = frozenset({"restored", "gray", "crop"})
    provides: frozenset[str] = frozenset({"restored"})
    finalizes: frozenset[str] = frozenset()

    def __init__(self, color_fix: bool, size: int = 512):
        from facerest_cli.blend.mask import feather_mask

        self.color_fix = color_fix
        self._weight = feather_mask(size, inner=0.2, outer=0.3)  # the central face region

    def before_restore(self, faces: list[FaceState]) -> None:
        pass

    def after_restore(self, faces: list[FaceState]) -> list[FaceState]:
        for f in faces:
            if f.gray:
                f.restored = np.repeat(to_gray(f.restored), 3, axis=2)
            elif self.color_fix:
                f.restored = match_color(f.restored, to_float(f.crop), self._weight)
        return []

    def summary(self) -> None:
        return None

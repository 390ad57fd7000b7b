"""Crop-space blend masks: ``(S, S)`` float32 in [0, 1], exactly 0 near the crop border so no box edge shows."""

from __future__ import annotations

import numpy as np


def feather_mask(size: int, inner: float = 0.02, outer: float = 0.12) -> np.ndarray:
    """A rectangle eroded at the crop border and feathered with a smoothstep ramp.

    The value is exactly 0 within ``inner * size`` of the border (where the inverse warp also samples the
    crop's padding) and exactly 1 beyond ``outer * size``; in between it rises smoothly, so the pasted face
    fades into the frame with no seam.
    """
    if not 0 <= inner < outer < 0.5:
        raise ValueError(f"need 0 <= inner < outer < 0.5, got {inner}, {outer}")
    idx = np.arange(size, dtype=np.float32)
    d = np.minimum(idx, size - 1 - idx)  # distance to the nearest border, per axis
    t = np.clip((d - inner * size) / ((outer - inner) * size), 0.0, 1.0)
    ramp = t * t * (3.0 - 2.0 * t)
    return np.minimum(ramp[:, None], ramp[None, :]).astype(np.float32)

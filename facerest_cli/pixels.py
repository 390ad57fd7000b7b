"""Pixel value conventions, written once: integer <-> float scaling, 16 -> 8 bit, channel layout.

numpy images are ``(H, W, C)`` uint8 or uint16 (``facerest_cli.types``); float images are float32 in ``[0, 1]``
(uint8 / 255, uint16 / 65535). Going back rounds to nearest and clips. 16 -> 8 bit rounds ``v / 257`` (65535 ->
255 exactly). Every stage converts through these functions, so the convention cannot drift between modules.

numpy only; the torch batch conversions import torch when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def max_value(dtype: np.dtype | type) -> float:
    """255.0 for uint8, 65535.0 for uint16: the integer value of float 1.0."""
    return 65535.0 if np.dtype(dtype) == np.uint16 else 255.0


def to_float(a: np.ndarray) -> np.ndarray:
    """uint8/uint16 -> float32 in [0, 1]."""
    return a.astype(np.float32) / np.float32(max_value(a.dtype))


def from_float(f: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """float in [0, 1] -> ``dtype`` (uint8/uint16), rounded to nearest, clipped."""
    m = max_value(dtype)
    return np.clip(np.rint(f * m), 0, m).astype(dtype)


def to_uint8(a: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 by rounding ``v / 257`` (uint8 is returned as is), a band of rows at a time so a big 16-bit
    scan never gets a full-size 32-bit copy."""
    if a.dtype != np.uint16:
        return a
    out = np.empty(a.shape, np.uint8)
    row = int(np.prod(a.shape[1:])) if a.ndim > 1 else 1
    step = max(1, (1 << 18) // max(1, row))  # ~1 MB of uint32 per band
    for y in range(0, a.shape[0], step):
        band = a[y : y + step].astype(np.uint32)
        band += 128
        band //= 257
        out[y : y + step] = band
    return out


def as_bgr(a: np.ndarray) -> np.ndarray:
    """Gray / gray+alpha / BGR / BGRA ``(H, W, C)`` -> 3-channel BGR of the same dtype (gray replicated, alpha
    dropped; a BGR array is returned as is)."""
    c = a.shape[2]
    if c in (1, 2):
        return np.ascontiguousarray(np.repeat(a[:, :, :1], 3, axis=2))
    return a if c == 3 else a[:, :, :3]


def crops_to_tensor(batch: np.ndarray, device: "torch.device") -> "torch.Tensor":
    """``(N, S, S, 3)`` uint8/uint16 BGR crops -> ``(N, 3, S, S)`` float32 RGB [0, 1] on ``device``.

    The crops travel in their integer dtype (a quarter of float32's bytes) and are scaled on the device."""
    import torch

    m = max_value(batch.dtype)
    if batch.dtype == np.uint16:
        batch = batch.astype(np.int32)  # torch has no uint16 arithmetic on every backend
    host = torch.from_numpy(np.ascontiguousarray(batch))
    if device.type == "cuda":
        host = host.pin_memory()
    return host.to(device, non_blocking=True).permute(0, 3, 1, 2).flip(1).float().div_(m)


def tensor_to_crops(x: "torch.Tensor") -> np.ndarray:
    """``(N, 3, S, S)`` float RGB [0, 1] -> ``(N, S, S, 3)`` float32 BGR numpy."""
    return x.flip(1).permute(0, 2, 3, 1).contiguous().cpu().numpy()

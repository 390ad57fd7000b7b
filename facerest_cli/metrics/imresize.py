"""MATLAB ``imresize`` (bicubic, with antialiasing when shrinking) in torch float32, step for step as BasicSR's
``basicsr/utils/matlab_functions.py`` computes it, so that NIQE's second scale (and the ``bicubic-xN``
degradation) give the field's numbers to the last float32 bit.

The resampling is separable: rows first, then columns. For each output coordinate ``x`` (1-based) the input
coordinate is ``u = x / s + 0.5 (1 - 1/s)``; the cubic kernel (Keys, a = -0.5) is widened to ``4 / s`` taps and
scaled by ``s`` when ``s < 1`` (antialiasing); the weights of each output pixel are normalised to sum 1; edge
taps whose weight is zero in every row are dropped; the image is extended by symmetric (mirror) padding.
Every step is float32 (weights from ``torch.linspace``), and each output row/column is one ``torch.mv`` of the
taps, as in BasicSR: a batched matmul would sum in another order and move results by an ulp, which NIQE's
argmin over a 0.001 grid can turn into a 1e-4 change of the score.
"""

from __future__ import annotations

import math

import numpy as np


def _cubic(x):
    import torch

    absx = torch.abs(x)
    absx2 = absx**2
    absx3 = absx**3
    return (1.5 * absx3 - 2.5 * absx2 + 1) * ((absx <= 1).type_as(absx)) + (
        -0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2
    ) * (((absx > 1) * (absx <= 2)).type_as(absx))


def _weights_indices(in_length: int, out_length: int, scale: float, antialiasing: bool):
    """``(out_length, taps)`` float32 weights, the first input index (0-based, into the padded signal) of each
    output, and the symmetric padding before / after."""
    import torch

    kernel_width = 4.0
    if scale < 1 and antialiasing:
        kernel_width = kernel_width / scale  # a wider kernel both interpolates and low-passes
    x = torch.linspace(1, out_length, out_length)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - kernel_width / 2)
    p = math.ceil(kernel_width) + 2
    offsets = torch.linspace(0, p - 1, p).view(1, p).expand(out_length, p)
    indices = left.view(out_length, 1).expand(out_length, p) + offsets
    distance = u.view(out_length, 1).expand(out_length, p) - indices
    if scale < 1 and antialiasing:
        weights = scale * _cubic(distance * scale)
    else:
        weights = _cubic(distance)
    weights = weights / torch.sum(weights, 1).view(out_length, 1).expand(out_length, p)
    zeros = torch.sum((weights == 0), 0)
    if not math.isclose(zeros[0], 0, rel_tol=1e-6):
        indices, weights = indices.narrow(1, 1, p - 2), weights.narrow(1, 1, p - 2)
    if not math.isclose(zeros[-1], 0, rel_tol=1e-6):
        indices, weights = indices.narrow(1, 0, p - 2), weights.narrow(1, 0, p - 2)
    weights, indices = weights.contiguous(), indices.contiguous()
    sym_start = -indices.min() + 1
    sym_end = indices.max() - in_length
    indices = indices + sym_start - 1
    return weights, indices, int(sym_start), int(sym_end)


def _pad_symmetric(img, dim: int, before: int, after: int):
    """Mirror ``before`` / ``after`` samples along ``dim`` (edge sample repeated: MATLAB's 'symmetric')."""
    import torch

    n = img.size(dim)
    parts = []
    if before > 0:
        parts.append(img.narrow(dim, 0, before).flip(dim))
    parts.append(img)
    if after > 0:
        parts.append(img.narrow(dim, n - after, after).flip(dim))
    return torch.cat(parts, dim)


def imresize_tensor(img, scale: float | tuple[float, float] | None = None, size: tuple[int, int] | None = None,
                    antialiasing: bool = True):
    """``(C, H, W)`` float32 tensor -> ``(C, H', W')`` float32, not rounded or clipped.

    ``scale`` (one factor, or ``(sy, sx)``) gives ``H' = ceil(H * sy)``; ``size = (H', W')`` instead sets the
    output size and each axis' factor ``H'/H``. BasicSR supports only a single scale; ``size`` is ours.
    """
    import torch

    if img.dim() != 3:
        raise ValueError(f"expected a (C, H, W) tensor, got shape {tuple(img.shape)}")
    img = img.float()
    c, in_h, in_w = img.shape
    if size is not None:
        out_h, out_w = int(size[0]), int(size[1])
        sy, sx = out_h / in_h, out_w / in_w
    else:
        if scale is None:
            raise ValueError("give scale or size")
        sy, sx = (float(scale), float(scale)) if not isinstance(scale, tuple) else (float(scale[0]), float(scale[1]))
        out_h, out_w = math.ceil(in_h * sy), math.ceil(in_w * sx)
    w_h, idx_h, hs, he = _weights_indices(in_h, out_h, sy, antialiasing)
    w_w, idx_w, ws, we = _weights_indices(in_w, out_w, sx, antialiasing)

    aug = _pad_symmetric(img, 1, hs, he)
    out1 = torch.empty(c, out_h, in_w, dtype=torch.float32)
    taps = w_h.size(1)
    for i in range(out_h):
        s = int(idx_h[i][0])
        for j in range(c):
            out1[j, i, :] = aug[j, s : s + taps, :].transpose(0, 1).mv(w_h[i])

    aug = _pad_symmetric(out1, 2, ws, we)
    out2 = torch.empty(c, out_h, out_w, dtype=torch.float32)
    taps = w_w.size(1)
    for i in range(out_w):
        s = int(idx_w[i][0])
        for j in range(c):
            out2[j, :, i] = aug[j, :, s : s + taps].mv(w_w[i])
    return out2


def imresize(img: np.ndarray, scale: float | tuple[float, float] | None = None, size: tuple[int, int] | None = None,
             antialiasing: bool = True) -> np.ndarray:
    """numpy ``(H, W)`` or ``(H, W, C)`` (values as given, usually [0, 1]) -> float32 of the new size.

    Conversion as BasicSR's numpy path: ``torch.from_numpy(img.transpose(2, 0, 1)).float()``.
    """
    import torch

    a = np.asarray(img)
    squeeze = a.ndim == 2
    if squeeze:
        a = a[:, :, None]
    out = imresize_tensor(torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float(), scale, size,
                          antialiasing).numpy()
    return out[0] if squeeze else out.transpose(1, 2, 0)

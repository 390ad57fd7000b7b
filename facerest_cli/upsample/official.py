"""An exact reproduction of Real-ESRGAN's ``RealESRGANer.enhance`` (``realesrgan/utils.py``), for users who need the
official pixels (``--tile N --tile-pad P --pre-pad Q`` in the exact mode, ``--compat gfpgan``).

Checked against ``../shared/checkpoint-formats/goldens/realesrganer_x2plus_tiled.npz`` (tiled, untiled, pre-pad,
odd sizes, outscale 3.5). The steps, in the official order:

1. ``img.astype(float32) / max_range`` where ``max_range = 65535 if img.max() > 256 else 255`` (so a 16-bit image
   whose maximum is <= 256 is treated as 8-bit, as the official code does); gray -> 3 equal channels, BGR -> RGB;
   a 4th channel is alpha, upscaled separately (through the network as a 3-channel gray image, or bilinearly);
2. NCHW float32; reflect pad ``pre_pad`` on the right and bottom; reflect "mod pad" to a multiple of 2 (x2 nets) or
   4 (x1 nets) on the right and bottom;
3. the whole image through the network, or tiles of ``tile`` with ``tile_pad`` context clipped at the image border,
   each run alone, its core written once into the output (no blending: this is where the seams come from);
4. crop the pads, clamp to [0, 1], RGB -> BGR (gray: ``BGR2GRAY``), ``* max_range``, round half to even, cast;
5. if ``outscale`` differs from the network scale: ``cv2.resize`` of the integer image to
   ``(int(w * outscale), int(h * outscale))`` with ``INTER_LANCZOS4``.

The whole image lives in memory as float32 NCHW here, as in the official code: use :mod:`facerest_cli.upsample.tiling`
for large scans.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    import torch

Net = Callable[["torch.Tensor"], "torch.Tensor"]


def _mod_scale(scale: int) -> int | None:
    return {2: 2, 1: 4}.get(scale)


def official_process(t: "torch.Tensor", net: Net, scale: int, *, tile: int = 0, tile_pad: int = 10,
                     pre_pad: int = 0) -> "torch.Tensor":
    """Steps 2-3 and the crop of step 4 on a ``(1, C, H, W)`` float32 RGB tensor in [0, 1]: returns the network's
    ``(1, C, H*scale, W*scale)`` output before the clamp (``RealESRGANer.post_process()``)."""
    import torch
    from torch.nn import functional as F

    img = t
    if pre_pad != 0:
        img = F.pad(img, (0, pre_pad, 0, pre_pad), "reflect")
    mod = _mod_scale(scale)
    mod_h = mod_w = 0
    if mod is not None:
        h, w = img.shape[-2:]
        mod_h = (mod - h % mod) if h % mod else 0
        mod_w = (mod - w % mod) if w % mod else 0
        img = F.pad(img, (0, mod_w, 0, mod_h), "reflect")
    with torch.inference_mode():
        out = _tile_process(img, net, scale, tile, tile_pad) if tile > 0 else net(img)
    if mod is not None:
        h, w = out.shape[-2:]
        out = out[:, :, 0 : h - mod_h * scale, 0 : w - mod_w * scale]
    if pre_pad != 0:
        h, w = out.shape[-2:]
        out = out[:, :, 0 : h - pre_pad * scale, 0 : w - pre_pad * scale]
    return out


def _tile_process(img: "torch.Tensor", net: Net, scale: int, tile: int, tile_pad: int) -> "torch.Tensor":
    b, c, height, width = img.shape
    output = img.new_zeros((b, c, height * scale, width * scale))
    tiles_x = math.ceil(width / tile)
    tiles_y = math.ceil(height / tile)
    for y in range(tiles_y):
        for x in range(tiles_x):
            x0, y0 = x * tile, y * tile
            x1, y1 = min(x0 + tile, width), min(y0 + tile, height)
            # Context is clipped at the image border (border tiles see less of it and are smaller).
            px0, px1 = max(x0 - tile_pad, 0), min(x1 + tile_pad, width)
            py0, py1 = max(y0 - tile_pad, 0), min(y1 + tile_pad, height)
            out_tile = net(img[:, :, py0:py1, px0:px1])
            ox, oy = (x0 - px0) * scale, (y0 - py0) * scale
            output[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = out_tile[
                :, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale
            ]
    return output


def _to_nchw(img_hwc: np.ndarray) -> "torch.Tensor":
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.transpose(img_hwc, (2, 0, 1)))).float().unsqueeze(0)


def _to_bgr_hwc(out: "torch.Tensor") -> np.ndarray:
    o = out.detach().squeeze(0).float().cpu().clamp(0, 1).numpy()
    return np.transpose(o[[2, 1, 0], :, :], (1, 2, 0))


def enhance_official(img: np.ndarray, net: Net, scale: int, *, tile: int = 0, tile_pad: int = 10, pre_pad: int = 10,
                     outscale: float | None = None, alpha_upsampler: str = "realesrgan") -> tuple[np.ndarray, str]:
    """``RealESRGANer(scale, ..., tile, tile_pad, pre_pad).enhance(img, outscale, alpha_upsampler)``.

    ``img``: ``(H, W)`` or ``(H, W, 1)`` gray, ``(H, W, 3)`` BGR or ``(H, W, 4)`` BGRA, uint8 or uint16 (as cv2
    reads it). ``net``: ``(1, 3, h, w)`` float32 RGB -> ``(1, 3, h*scale, w*scale)`` (e.g. ``UpsamplerNet.forward``).
    Returns ``(output, mode)``: the output in the input's layout (BGR(A)/gray), uint8 or uint16 as chosen by the
    ``max > 256`` rule, and mode ``'L' | 'RGB' | 'RGBA'``. The constructor defaults are the class's (``pre_pad=10``);
    ``inference_realesrgan.py`` passes ``pre_pad=0``, and so does GFPGAN's background upsampler.
    """
    import cv2

    keep_channel_axis = img.ndim == 3 and img.shape[2] == 1
    src = img[:, :, 0] if keep_channel_axis else img
    h_input, w_input = src.shape[0:2]
    x = src.astype(np.float32)
    max_range = 65535 if np.max(x) > 256 else 255
    x = x / max_range
    alpha = None
    if x.ndim == 2:
        mode = "L"
        x = cv2.cvtColor(x, cv2.COLOR_GRAY2RGB)
    elif x.shape[2] == 4:
        mode = "RGBA"
        alpha = x[:, :, 3]
        x = cv2.cvtColor(x[:, :, 0:3], cv2.COLOR_BGR2RGB)
        if alpha_upsampler == "realesrgan":
            alpha = cv2.cvtColor(alpha, cv2.COLOR_GRAY2RGB)
    elif x.shape[2] == 3:
        mode = "RGB"
        x = cv2.cvtColor(x, cv2.COLOR_BGR2RGB)
    else:
        raise ValueError(f"RealESRGANer.enhance takes gray, BGR or BGRA images, got shape {img.shape}")

    def run(a: np.ndarray) -> np.ndarray:
        return _to_bgr_hwc(official_process(_to_nchw(a), net, scale, tile=tile, tile_pad=tile_pad, pre_pad=pre_pad))

    out = run(x)
    if mode == "L":
        out = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
    if mode == "RGBA":
        if alpha_upsampler == "realesrgan":
            out_alpha = cv2.cvtColor(run(alpha), cv2.COLOR_BGR2GRAY)
        else:
            ah, aw = alpha.shape[0:2]
            out_alpha = cv2.resize(alpha, (aw * scale, ah * scale), interpolation=cv2.INTER_LINEAR)
        out = cv2.cvtColor(out, cv2.COLOR_BGR2BGRA)
        out[:, :, 3] = out_alpha
    if max_range == 65535:
        output = (out * 65535.0).round().astype(np.uint16)
    else:
        output = (out * 255.0).round().astype(np.uint8)
    if outscale is not None and outscale != float(scale):
        output = cv2.resize(output, (int(w_input * outscale), int(h_input * outscale)), interpolation=cv2.INTER_LANCZOS4)
    if keep_channel_axis and output.ndim == 2:
        output = output[:, :, None]
    return output, mode

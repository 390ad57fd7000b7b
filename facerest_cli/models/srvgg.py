"""SRVGGNetCompact, Real-ESRGAN's compact upsampler: ``realesr-general-x4v3`` (and its ``-wdn`` twin).

Same parameter names as Real-ESRGAN's ``realesrgan/archs/srvgg_arch.py`` (checkpoint-exact against
``../shared/checkpoint-formats/realesr_general_x4v3.json``). A plain stack of 3x3 convs and activations at the
input resolution, a PixelShuffle to the output, plus the nearest-upsampled input (the network learns the residual).
Input ``(N, 3, H, W)`` float RGB in [0, 1], any H, W; output ``(N, 3, H*upscale, W*upscale)``, not clamped.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _activation(act_type: str, num_feat: int) -> nn.Module:
    if act_type == "relu":
        return nn.ReLU(inplace=True)
    if act_type == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    if act_type == "leakyrelu":
        return nn.LeakyReLU(negative_slope=0.1, inplace=True)
    raise ValueError(f"act_type must be relu, prelu or leakyrelu, got {act_type!r}")


class SRVGGNetCompact(nn.Module):
    """``body`` = conv, act, ``num_conv`` x (conv, act), conv to ``num_out_ch * upscale**2``; then PixelShuffle."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_conv: int = 16,
                 upscale: int = 4, act_type: str = "prelu"):
        super().__init__()
        self.upscale = upscale
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        # A ModuleList (not Sequential) keeps the official "body.<i>" keys; forward runs it in order.
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, C_out, H*upscale, W*upscale)``."""
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        return out + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


def realesr_general_x4v3(**overrides) -> SRVGGNetCompact:
    """``realesr-general-x4v3.pth`` / ``realesr-general-wdn-x4v3.pth``:
    ``SRVGGNetCompact(num_feat=64, num_conv=32, upscale=4, act_type='prelu')``."""
    kw = dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4, act_type="prelu")
    kw.update(overrides)
    return SRVGGNetCompact(**kw)

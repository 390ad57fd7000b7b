"""RRDBNet (ESRGAN's generator), the Real-ESRGAN background upsampler: ``RealESRGAN_x4plus`` and ``RealESRGAN_x2plus``.

Same parameter names and layout as BasicSR's ``basicsr/archs/rrdbnet_arch.py`` (checkpoint-exact against
``../shared/checkpoint-formats/realesrgan_x{2,4}plus.json``). Input ``(N, 3, H, W)`` float RGB in [0, 1] (no
normalisation); output ``(N, 3, H*scale, W*scale)``, **not clamped** (``RealESRGANer`` clamps afterwards).

Scale 2 and 1 fold space into channels first (pixel-unshuffle by 2 or 4), so the trunk always runs at 1/4 of the
output resolution; the x2 model therefore needs even H and W.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each seeing the concatenation of the input and all earlier outputs; residual scaled by 0.2."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Three dense blocks in a residual (scaled by 0.2)."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rdb3(self.rdb2(self.rdb1(x)))
        return out * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN generator: conv, ``num_block`` RRDBs, conv, two nearest x2 upsamplings with convs, two output convs."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, scale: int = 4, num_feat: int = 64,
                 num_block: int = 23, num_grow_ch: int = 32):
        super().__init__()
        if scale not in (1, 2, 4):
            raise ValueError(f"RRDBNet scale must be 1, 2 or 4, got {scale}")
        self.scale = scale
        # The trunk always upsamples by 4; smaller scales fold 2x2 (x2) or 4x4 (x1) pixels into channels first.
        self.unshuffle = {4: 1, 2: 2, 1: 4}[scale]
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, C_out, H*scale, W*scale)``; H and W must be multiples of the unshuffle factor."""
        if self.unshuffle > 1:
            h, w = x.shape[-2:]
            if h % self.unshuffle or w % self.unshuffle:
                raise ValueError(f"RRDBNet x{self.scale} needs H and W divisible by {self.unshuffle}, got {h}x{w}")
            # BasicSR's pixel_unshuffle orders channels c*r*r + dy*r + dx, as torch's does.
            feat = F.pixel_unshuffle(x, self.unshuffle)
        else:
            feat = x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


def realesrgan_x4plus(**overrides) -> RRDBNet:
    """``RealESRGAN_x4plus.pth``: ``RRDBNet(3, 3, num_feat=64, num_block=23, num_grow_ch=32, scale=4)``."""
    kw = dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=4)
    kw.update(overrides)
    return RRDBNet(**kw)


def realesrgan_x2plus(**overrides) -> RRDBNet:
    """``RealESRGAN_x2plus.pth``: the same with ``scale=2`` (pixel-unshuffle by 2 first: even H, W)."""
    kw = dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=2)
    kw.update(overrides)
    return RRDBNet(**kw)

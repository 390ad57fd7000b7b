"""MobileFaceNet recognizer as in bubbliiiing/arcface-pytorch ``nets/mobilefacenet.py``.

MobileFaceNet (Chen et al., 2018) in the TreB1eN/InsightFace_Pytorch block naming (``Conv_block``,
``Depth_Wise`` -> ``conv``/``conv_dw``/``project``, ``Residual.model.N``) with bubbliiiing's head: 1x1 conv to 512
(``sep``/``sep_bn``/``prelu``), a 7x7 global depthwise conv (``GDC_dw``/``GDC_bn``) and a 1x1 conv to the embedding
(``features``/``last_bn``, a BatchNorm2d). The released ``arcface_mobilefacenet.pth`` wraps it as the ``arcface``
attribute of an ``Arcface`` module, hence its ``arcface.`` key prefix (stripped by weights.toml).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from facerest_cli.models.arch import ArchSpec, face


class ConvBlock(nn.Module):
    """conv (no bias) -> BN -> per-channel PReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.prelu = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.bn(self.conv(x)))


class LinearBlock(nn.Module):
    """conv (no bias) -> BN, no activation (the linear bottleneck)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class DepthWise(nn.Module):
    """Inverted bottleneck: 1x1 expand to ``hidden`` -> 3x3 depthwise (stride) -> 1x1 linear projection.

    ``hidden`` is the official ``groups`` argument: the expanded width, which is also the depthwise group count.
    """

    def __init__(self, cin: int, cout: int, hidden: int, stride: int = 1, residual: bool = False) -> None:
        super().__init__()
        self.conv = ConvBlock(cin, hidden)
        self.conv_dw = ConvBlock(hidden, hidden, kernel=3, stride=stride, padding=1, groups=hidden)
        self.project = LinearBlock(hidden, cout)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.conv_dw(self.conv(x)))
        return x + out if self.residual else out


class Residual(nn.Module):
    """``num_block`` stride-1 residual bottlenecks of constant width (keys ``model.N.*``)."""

    def __init__(self, channels: int, num_block: int, hidden: int) -> None:
        super().__init__()
        self.model = nn.Sequential(*(DepthWise(channels, channels, hidden, residual=True) for _ in range(num_block)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MobileFaceNet(nn.Module):
    """MobileFaceNet face embedder.

    Input: ``(B, 3, 112, 112)`` float, **RGB**, ``(x / 255 - 0.5) / 0.5`` (in [-1, 1]), aligned to the 5-point
    ArcFace template. Output: ``(B, embedding_size)`` float, **not** L2-normalised (the official wrapper
    normalises; here the identity stage does). The input must be 112x112: ``GDC_dw`` is a 7x7 kernel over the
    7x7 final map.
    """

    def __init__(self, embedding_size: int = 128) -> None:
        super().__init__()
        self.conv1 = ConvBlock(3, 64, kernel=3, stride=2, padding=1)  # 112 -> 56
        self.conv2_dw = ConvBlock(64, 64, kernel=3, stride=1, padding=1, groups=64)
        self.conv_23 = DepthWise(64, 64, hidden=128, stride=2)  # 56 -> 28
        self.conv_3 = Residual(64, num_block=4, hidden=128)
        self.conv_34 = DepthWise(64, 128, hidden=256, stride=2)  # 28 -> 14
        self.conv_4 = Residual(128, num_block=6, hidden=256)
        self.conv_45 = DepthWise(128, 128, hidden=512, stride=2)  # 14 -> 7
        self.conv_5 = Residual(128, num_block=2, hidden=256)
        self.sep = nn.Conv2d(128, 512, 1, bias=False)
        self.sep_bn = nn.BatchNorm2d(512)
        self.prelu = nn.PReLU(512)
        self.GDC_dw = nn.Conv2d(512, 512, 7, groups=512, bias=False)
        self.GDC_bn = nn.BatchNorm2d(512)
        self.features = nn.Conv2d(512, embedding_size, 1, bias=False)
        self.last_bn = nn.BatchNorm2d(embedding_size)
        self._init_weights()

    def _init_weights(self) -> None:
        # Official init (He normal over fan-out, BN = identity); only matters before a checkpoint is loaded.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2_dw(self.conv1(x))
        x = self.conv_3(self.conv_23(x))
        x = self.conv_4(self.conv_34(x))
        x = self.conv_5(self.conv_45(x))
        x = self.prelu(self.sep_bn(self.sep(x)))
        x = self.GDC_bn(self.GDC_dw(x))
        return torch.flatten(self.last_bn(self.features(x)), 1)


def mobilefacenet(**overrides: Any) -> MobileFaceNet:
    """bubbliiiing ``arcface_mobilefacenet.pth`` (CASIA-WebFace, ArcFace loss): ``MobileFaceNet(embedding_size=128)``."""
    return MobileFaceNet(**{"embedding_size": 128, **overrides})


MOBILEFACENET = ArchSpec(build=mobilefacenet, inputs=(face(112),))

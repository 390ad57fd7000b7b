"""3DDFA_V2 MobileNetV1 regressor (cleardusk/3DDFA_V2 ``models/mobilenet_v1.py``).

A plain MobileNetV1 (13 depthwise-separable blocks, global average pool, one linear head) whose head regresses
the 62 normalised 3DMM parameters: 12 pose (a 3x4 camera matrix), 40 shape and 10 expression coefficients.
State-dict keys are the official ones after the file's ``module.`` prefix is stripped and ``fc_param.*`` is
renamed to ``fc.*`` (see the ``3ddfa-*`` entries of weights.toml).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from facerest_cli.models.arch import ArchSpec, face

# (input multiplier, output multiplier, stride) of the 13 separable blocks, named as in the official file, in
# units of 32 channels before ``widen_factor`` scales them.
_BLOCKS: tuple[tuple[str, int, int, int], ...] = (
    ("dw2_1", 1, 2, 1),
    ("dw2_2", 2, 4, 2),
    ("dw3_1", 4, 4, 1),
    ("dw3_2", 4, 8, 2),
    ("dw4_1", 8, 8, 1),
    ("dw4_2", 8, 16, 2),
    ("dw5_1", 16, 16, 1),
    ("dw5_2", 16, 16, 1),
    ("dw5_3", 16, 16, 1),
    ("dw5_4", 16, 16, 1),
    ("dw5_5", 16, 16, 1),
    ("dw5_6", 16, 32, 2),
    ("dw6", 32, 32, 1),
)


def _act(prelu: bool) -> nn.Module:
    # The official model shares one activation module per block; a PReLU there has a single slope.
    return nn.PReLU() if prelu else nn.ReLU(inplace=True)


class DepthWiseBlock(nn.Module):
    """3x3 depthwise conv -> BN -> act -> 1x1 pointwise conv -> BN -> act (one activation module, used twice)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, prelu: bool = False) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(inplanes, inplanes, 3, stride=stride, padding=1, groups=inplanes, bias=False)
        self.bn_dw = nn.BatchNorm2d(inplanes)
        self.conv_sep = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn_sep = nn.BatchNorm2d(planes)
        self.relu = _act(prelu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn_dw(self.conv_dw(x)))
        return self.relu(self.bn_sep(self.conv_sep(x)))


class MobileNetV1(nn.Module):
    """3DDFA_V2 MobileNetV1 regressor.

    Input: ``(B, C_in, H, W)`` float, **BGR**, ``(x - 127.5) / 128`` (3DDFA_V2 never converts to RGB); the
    released weights expect 120x120 crops. Output: ``(B, num_classes)`` float, the 62 parameters normalised by
    ``param_mean_std_62d_120x120.pkl`` (de-normalise as ``p * std + mean``).

    ``size`` and ``mode`` are accepted because the official builder receives them; neither changes the network
    (global average pooling makes it size-agnostic), ``size`` is kept as ``input_size`` for callers.
    """

    def __init__(
        self,
        widen_factor: float = 1.0,
        num_classes: int = 62,
        prelu: bool = False,
        input_channel: int = 3,
        size: int = 120,
        mode: str = "small",
    ) -> None:
        super().__init__()
        self.input_size = int(size)
        self.mode = mode

        def ch(mult: int) -> int:
            # int() truncates, as the official code does (e.g. 32 * 0.5 -> 16).
            return int(32 * mult * widen_factor)

        self.conv1 = nn.Conv2d(input_channel, ch(1), 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch(1))
        self.relu = _act(prelu)
        for name, cin, cout, stride in _BLOCKS:
            self.add_module(name, DepthWiseBlock(ch(cin), ch(cout), stride=stride, prelu=prelu))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch(32), num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # Official init (He normal over fan-out, BN = identity); only matters before a checkpoint is loaded.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for name, *_ in _BLOCKS:
            x = getattr(self, name)(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _tddfa(defaults: dict[str, Any], overrides: dict[str, Any]) -> MobileNetV1:
    return MobileNetV1(**{**defaults, **overrides})


def tddfa_mb1(**overrides: Any) -> MobileNetV1:
    """3DDFA_V2 ``mb1_120x120.pth``: official arguments ``widen_factor=1.0, num_classes=62, size=120, mode='small'``."""
    return _tddfa(dict(widen_factor=1.0, num_classes=62, size=120, mode="small"), overrides)


def tddfa_mb05(**overrides: Any) -> MobileNetV1:
    """3DDFA_V2 ``mb05_120x120.pth``: official arguments ``widen_factor=0.5, num_classes=62, size=120, mode='small'``."""
    return _tddfa(dict(widen_factor=0.5, num_classes=62, size=120, mode="small"), overrides)


TDDFA_MB1 = ArchSpec(build=tddfa_mb1, inputs=(face(120),))
TDDFA_MB05 = ArchSpec(build=tddfa_mb05, inputs=(face(120),))

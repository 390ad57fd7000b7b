"""ArcFace improved ResNet (deepinsight/insightface ``recognition/arcface_torch/backbones/iresnet.py``).

Pre-activation "IR" residual blocks (BN -> conv -> BN -> PReLU -> conv(stride) -> BN, plus a 1x1-conv/BN
shortcut where the shape changes), a final BN, a linear layer over the flattened 7x7 map and a BatchNorm1d.
State-dict keys are the official ones (the released ``backbone.pth`` is a flat state dict).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Sequence

import torch
from torch import nn

from facerest_cli.models.arch import ArchSpec, face


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """IR block; the stride sits on the second conv, so the first one sees the full-resolution input."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Module):
    """ArcFace iResNet backbone.

    Input: ``(B, 3, 112, 112)`` float, **RGB**, ``(x / 255 - 0.5) / 0.5`` (i.e. in [-1, 1]), aligned to the
    5-point ArcFace template. Output: ``(B, num_features)`` float embedding, **not** L2-normalised.

    The input must be 112x112: ``fc`` reads the flattened 512x7x7 map. ``fp16=True`` runs the trunk under CUDA
    fp16 autocast and ``fc`` in float32, as the official training code does; ``fp16=False`` leaves the caller's
    autocast state alone (the official ``autocast(False)`` would switch a runtime's autocast off).
    """

    fc_scale = 7 * 7

    def __init__(
        self,
        layers: Sequence[int],
        dropout: float = 0.0,
        num_features: int = 512,
        zero_init_residual: bool = False,
        fp16: bool = False,
    ) -> None:
        super().__init__()
        self.fp16 = fp16
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._make_layer(64, layers[0], stride=2)
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.bn2 = nn.BatchNorm2d(512 * IBasicBlock.expansion, eps=1e-5)
        # Not in-place: a no-op at inference, and it must never write into a tensor the caller still holds.
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(512 * IBasicBlock.expansion * self.fc_scale, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)
        self._init_weights(zero_init_residual)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * IBasicBlock.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * IBasicBlock.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * IBasicBlock.expansion, eps=1e-5),
            )
        stage = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * IBasicBlock.expansion
        stage += [IBasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # Official init; only matters before a checkpoint is loaded. The embedding BN's scale is frozen at 1
        # during training (so it is trained as a pure standardiser plus bias).
        nn.init.ones_(self.features.weight)
        self.features.weight.requires_grad_(False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, IBasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        use_amp = self.fp16 and x.is_cuda
        with torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext():
            x = self.prelu(self.bn1(self.conv1(x)))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            x = self.dropout(torch.flatten(self.bn2(x), 1))
        x = self.fc(x.float() if use_amp else x)
        return self.features(x)


def _iresnet(layers: Sequence[int], overrides: dict[str, Any]) -> IResNet:
    args: dict[str, Any] = dict(num_features=512, dropout=0.0, fp16=False)
    args.update(overrides)
    return IResNet(layers, **args)


def iresnet50(**overrides: Any) -> IResNet:
    """ArcFace iResNet-50 (``get_model('r50', fp16=False, num_features=512, dropout=0)``), stages [3, 4, 14, 3]."""
    return _iresnet((3, 4, 14, 3), overrides)


def iresnet100(**overrides: Any) -> IResNet:
    """ArcFace iResNet-100 (``get_model('r100', fp16=False, num_features=512, dropout=0)``), stages [3, 13, 30, 3]."""
    return _iresnet((3, 13, 30, 3), overrides)


IRESNET50 = ArchSpec(build=iresnet50, inputs=(face(112),))
IRESNET100 = ArchSpec(build=iresnet100, inputs=(face(112),))

"""ResNet-18/34/50 (torchvision "v1.5" layout), written once for every net that embeds one.

State-dict keys are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0`` ...), so
checkpoints saved from ``torchvision.models.resnet50`` -- or from the in-file copies that RetinaFace-R50
(facexlib, via ``IntermediateLayerGetter``) and Deep3DFaceRecon (``models/networks.py``) use -- load unchanged.

``num_classes=None`` builds the network without ``fc``: that is what ``IntermediateLayerGetter`` keeps and what
Deep3DFaceRecon's ``use_last_fc=False`` builds, and then ``forward`` returns the pooled ``(B, C, 1, 1)`` map.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs; the first one carries the stride (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_ch, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # ``out`` is a fresh tensor here, never the block input, so the in-place add is safe
        return self.relu(out.add_(identity))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1; the stride sits on the 3x3 conv (torchvision's "v1.5", not the paper's 1x1)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_ch, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out.add_(identity))


class ResNet(nn.Module):
    """torchvision-compatible ResNet trunk.

    Input ``(B, 3, H, W)`` float, any H and W (every stride-2 stage maps a side ``s`` to ``ceil(s / 2)``, so
    ``layerK`` has side ``ceil(s / 2**(K+1))``); the normalisation is whatever the owning model was trained with.
    ``forward`` returns ``(B, num_classes)`` logits, or the pooled ``(B, C, 1, 1)`` map when ``num_classes`` is
    None (C = 512 * expansion). ``forward_features`` returns the maps of chosen stages for detectors / FPNs.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int], num_classes: int | None = 1000) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"ResNet needs 4 stage depths, got {list(layers)}")
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = 64
        stages = []
        for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), layers)):
            stage, in_ch = self._make_stage(block, in_ch, planes, depth, stride=1 if i == 0 else 2)
            stages.append(stage)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.out_channels = in_ch
        self.fc = nn.Linear(in_ch, num_classes) if num_classes is not None else None

    @staticmethod
    def _make_stage(
        block: type[BasicBlock] | type[Bottleneck], in_ch: int, planes: int, depth: int, stride: int
    ) -> tuple[nn.Sequential, int]:
        out_ch = planes * block.expansion
        downsample = None
        if stride != 1 or in_ch != out_ch:
            downsample = nn.Sequential(_conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))
        blocks: list[nn.Module] = [block(in_ch, planes, stride, downsample)]
        blocks += [block(out_ch, planes) for _ in range(1, depth)]
        return nn.Sequential(*blocks), out_ch

    def forward_features(self, x: torch.Tensor, layers: Sequence[int] = (1, 2, 3, 4)) -> list[torch.Tensor]:
        """Outputs of ``layer{k}`` for each k in ``layers`` (ascending, 1..4); stops after the last one."""
        if not layers or any(k not in (1, 2, 3, 4) for k in layers) or list(layers) != sorted(set(layers)):
            raise ValueError(f"layers must be ascending stage numbers in 1..4, got {list(layers)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feats: list[torch.Tensor] = []
        for k, stage in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), start=1):
            x = stage(x)
            if k in layers:
                feats.append(x)
            if k == layers[-1]:
                break
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.forward_features(x, (4,))[0])
        if self.fc is None:
            return x
        return self.fc(torch.flatten(x, 1))


def resnet18(num_classes: int | None = 1000) -> ResNet:
    """ResNet-18: BasicBlock x [2, 2, 2, 2], 512 output channels."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes)


def resnet34(num_classes: int | None = 1000) -> ResNet:
    """ResNet-34: BasicBlock x [3, 4, 6, 3], 512 output channels."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes)


def resnet50(num_classes: int | None = 1000) -> ResNet:
    """ResNet-50: Bottleneck x [3, 4, 6, 3], 2048 output channels."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes)

"""torchvision VGG-16 (configuration "D", no batch norm), as the LPIPS-vgg backbone.

Keys are torchvision's exactly (``features.N.*``, ``classifier.{0,3,6}.*``), so the ImageNet release file
``vgg16-397923af.pth`` loads strictly into ``vgg16()``, as ``torchvision.models.vgg16(weights=IMAGENET1K_V1)``
loads it. LPIPS then keeps only ``features``: its five slices end at relu1_2, relu2_2, relu3_3, relu4_3 and
relu5_3 (``LPIPS_SLICES``).

Input: ``(B, 3, H, W)`` float32 RGB, already normalised by the caller (LPIPS: its ScalingLayer).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

# torchvision cfgs["D"]: channel counts, "M" = 2x2 max pool.
_CFG_D: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

# Indices into ``features`` where LPIPS cuts its five slices (lpips/pretrained_networks.py, class vgg16).
LPIPS_SLICES: tuple[tuple[int, int], ...] = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
LPIPS_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)


def _features(cfg: Sequence[int | str]) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c_in, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c_in = int(v)
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """torchvision's ``VGG``: ``features`` -> 7x7 adaptive average pool -> 3-layer classifier (1000 classes)."""

    def __init__(self, cfg: Sequence[int | str] = _CFG_D, num_classes: int = 1000, init_weights: bool = True,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.features = _features(cfg)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            _torchvision_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, num_classes)`` logits (unused by LPIPS; kept so the module is torchvision's)."""
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _torchvision_init(net: nn.Module) -> None:
    """torchvision's VGG initialisation (used only when no weights follow)."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.constant_(m.bias, 0)


def vgg16(init_weights: bool = True) -> VGG:
    """VGG-16 with torchvision's constructor arguments.

    ``init_weights=False`` is what torchvision does when weights are about to be loaded (``_vgg`` sets it): the
    parameters are then allocated without being initialised (the 124 M classifier weights would otherwise cost
    about a second of random-number generation that the strict load immediately overwrites).
    """
    if init_weights:
        return VGG()
    with torch.device("meta"):
        net = VGG(init_weights=False)
    return net.to_empty(device="cpu")

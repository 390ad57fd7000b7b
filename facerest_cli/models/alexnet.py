"""torchvision AlexNet (the "one weird trick" variant torchvision ships), as the LPIPS-alex backbone.

Keys are torchvision's exactly (``features.{0,3,6,8,10}.*``, ``classifier.{1,4,6}.*``), so the ImageNet release
file ``alexnet-owt-7be5be79.pth`` loads strictly into ``alexnet()``, as
``torchvision.models.alexnet(weights=IMAGENET1K_V1)`` loads it. LPIPS keeps only ``features``, cut after
relu1..relu5 (``LPIPS_SLICES``).

Input: ``(B, 3, H, W)`` float32 RGB, already normalised by the caller (LPIPS: its ScalingLayer).
"""

from __future__ import annotations

import torch
from torch import nn

# lpips/pretrained_networks.py, class alexnet: features[0:2], [2:5], [5:8], [8:10], [10:12].
LPIPS_SLICES: tuple[tuple[int, int], ...] = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))
LPIPS_CHANNELS: tuple[int, ...] = (64, 192, 384, 256, 256)


class AlexNet(nn.Module):
    """torchvision's ``AlexNet``: ``features`` -> 6x6 adaptive average pool -> classifier (1000 classes)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, num_classes)`` logits (unused by LPIPS; kept so the module is torchvision's)."""
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def alexnet(init_weights: bool = True) -> AlexNet:
    """AlexNet with torchvision's constructor arguments (PyTorch default initialisation, as torchvision's).

    ``init_weights=False`` allocates the parameters without initialising them, for a strict load that follows.
    """
    if init_weights:
        return AlexNet()
    with torch.device("meta"):
        net = AlexNet()
    return net.to_empty(device="cpu")

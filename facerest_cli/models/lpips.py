"""LPIPS v0.1 (richzhang/PerceptualSimilarity, ``lpips/lpips.py``), re-implemented on our VGG-16 / AlexNet.

The network is two parts loaded from two files:

* the backbone's ``features`` (``models/vgg.py`` or ``models/alexnet.py``, loaded strictly from the torchvision
  ImageNet file), cut into five slices;
* ``LPIPSHead``: five 1x1 convolutions without bias, ``lin{k}.model.1.weight`` of shape ``(1, C_k, 1, 1)``
  (``model.0`` is a Dropout, inactive in eval), loaded strictly from the LPIPS ``v0.1/<net>.pth`` file. The
  official code loads that file with ``strict=False`` only because its module also holds the backbone; here the
  head is its own module, so the strict load checks every one of the file's keys.

Computation (``version='0.1'``, ``lpips=True``, ``spatial=False``, ``normalize=False``):
``x -> (x - shift) / scale`` with the code constants below, backbone features at the five cut points,
channel-wise unit normalisation ``f / (||f||_2 + 1e-10)``, squared difference, the 1x1 conv, the spatial mean per
layer, and the sum over the five layers.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

# ScalingLayer constants of LPIPS v0.1 (in code, in no file): ImageNet statistics mapped to the [-1, 1] range.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10


class _NetLin(nn.Module):
    """``NetLinLayer``: Dropout (identity in eval) then a 1x1 conv from ``channels`` to 1, no bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, stride=1, padding=0, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPSHead(nn.Module):
    """The five learned linear layers; state-dict keys ``lin0..lin4.model.1.weight`` as in the official file."""

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        self.channels = tuple(int(c) for c in channels)
        for k, c in enumerate(self.channels):
            self.add_module(f"lin{k}", _NetLin(c))

    def layers(self) -> list[nn.Module]:
        return [getattr(self, f"lin{k}") for k in range(len(self.channels))]


class LPIPS(nn.Module):
    """LPIPS distance between two batches of images.

    ``features``: the backbone's ``features`` Sequential (weights loaded); ``slices``: the five ``(start, stop)``
    index ranges into it; ``head``: the loaded ``LPIPSHead``. The modules are shared with ``features``, not copied.
    """

    def __init__(self, features: nn.Sequential, slices: Sequence[tuple[int, int]], head: LPIPSHead) -> None:
        super().__init__()
        if len(slices) != len(head.channels):
            raise ValueError(f"{len(slices)} backbone slices but {len(head.channels)} linear layers")
        self.slices = nn.ModuleList(nn.Sequential(*(features[i] for i in range(a, b))) for a, b in slices)
        self.head = head
        self.register_buffer("shift", torch.tensor(SHIFT, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Raw backbone outputs at the five cut points for ``x`` ``(B, 3, H, W)`` RGB in ``[-1, 1]``."""
        h = (x - self.shift) / self.scale
        out = []
        for s in self.slices:
            h = s(h)
            out.append(h)
        return out

    @staticmethod
    def normalize(f: torch.Tensor) -> torch.Tensor:
        """Unit length along channels: ``f / (sqrt(sum_c f^2) + 1e-10)`` (lpips ``normalize_tensor``)."""
        return f / (torch.sqrt(torch.sum(f**2, dim=1, keepdim=True)) + EPS)

    def forward(self, in0: torch.Tensor, in1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``in0``, ``in1``: ``(B, 3, H, W)`` float32 RGB in ``[-1, 1]`` -> (``(B,)`` LPIPS, ``(B, 5)`` per layer)."""
        per_layer = []
        for f0, f1, lin in zip(self.features(in0), self.features(in1), self.head.layers()):
            diff = (self.normalize(f0) - self.normalize(f1)) ** 2
            per_layer.append(lin(diff).mean(dim=[2, 3], keepdim=True))
        # The official sum starts from the first layer and adds the others in order (val = res[0]; val += res[l]).
        total = per_layer[0]
        for r in per_layer[1:]:
            total = total + r
        return total.flatten(), torch.cat([r.flatten(1) for r in per_layer], dim=1)


def lpips_vgg_head() -> LPIPSHead:
    from facerest_cli.models.vgg import LPIPS_CHANNELS

    return LPIPSHead(LPIPS_CHANNELS)


def lpips_alex_head() -> LPIPSHead:
    from facerest_cli.models.alexnet import LPIPS_CHANNELS

    return LPIPSHead(LPIPS_CHANNELS)

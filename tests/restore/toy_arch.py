"""A toy restorer living outside facerest: its whole registration is this module plus a weights.toml fragment
(tests/restore/test_add_a_model.py). It negates its input in the network's own [-1, 1] space, so a restored face
is the photographic negative of the input face: easy to recognise in the output."""

from __future__ import annotations

import torch
from torch import nn

from facerest_cli.models.arch import ArchSpec


class ToyNegate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _restore(net: ToyNegate, x: torch.Tensor) -> torch.Tensor:
    return net(x)


TOY = ArchSpec(build=ToyNegate, call=_restore)


def negate_state_dict() -> dict[str, torch.Tensor]:
    return {"conv.weight": -torch.eye(3).view(3, 3, 1, 1), "conv.bias": torch.zeros(3)}

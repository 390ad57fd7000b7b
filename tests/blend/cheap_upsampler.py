"""A cheap background upsampler living outside facerest, registered like a user's model (a weights.toml fragment in
$FACEREST_HOME/models naming ``tests.blend.cheap_upsampler:NEAREST_X2``, its file imported with ``facerest weights
import``). It has the upsampler interface (``(N, 3, h, w)`` RGB [0, 1] -> ``(N, 3, 2h, 2w)``) and real weights that
load strictly, but costs ~12 FLOP per output pixel instead of RRDBNet's 2.2 MFLOP: a 1x1 convolution to 12
channels and a pixel shuffle. With ``nearest_state_dict`` it computes exact nearest-neighbour x2 (weights 1 and 0),
so a test knows every output pixel without running the code under test."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import MappingProxyType

import torch
from torch import nn

from facerest_cli.models.arch import ArchSpec


class NearestX2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


NEAREST_X2 = ArchSpec(build=NearestX2, meta=MappingProxyType({"scale": 2, "align": 1}))


def nearest_state_dict() -> dict[str, torch.Tensor]:
    """Output channel 4c + k (PixelShuffle: channel c, sub-pixel k) copies input channel c."""
    w = torch.zeros(12, 3, 1, 1)
    for c in range(3):
        w[4 * c : 4 * c + 4, c] = 1.0
    return {"conv.weight": w, "conv.bias": torch.zeros(12)}


FRAGMENT = """
[cheap-x2]
role = "upsampler"
arch = "tests.blend.cheap_upsampler:NEAREST_X2"
license = "MIT"
source = "tests/blend/cheap_upsampler.py"
input = {{ color = "rgb" }}
[[cheap-x2.files]]
name = "cheap_x2.pth"
url = ["http://127.0.0.1:9/cheap_x2.pth"]
sha256 = "{sha}"
size = {size}
"""


def install(home: Path, tmp: Path) -> Path:
    """Write the checkpoint and the fragment under ``home`` ($FACEREST_HOME); returns the checkpoint to import."""
    ckpt = tmp / "cheap_x2.pth"
    torch.save(nearest_state_dict(), ckpt)
    data = ckpt.read_bytes()
    models = home / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / "cheap.toml").write_text(FRAGMENT.format(sha=hashlib.sha256(data).hexdigest(), size=len(data)))
    return ckpt

"""Deep3DFaceRecon coefficient regressor (sicxu/Deep3DFaceRecon_pytorch ``ReconNetWrapper``).

A torchvision-style ResNet (``backbone.*``, no ``fc``) whose pooled feature goes through seven 1x1 convs
(``final_layers.0..6``); their outputs are concatenated into the 257 BFM09 coefficients.
"""

from __future__ import annotations

import torch
from torch import nn

from facerest_cli.models.arch import ArchSpec, face
from facerest_cli.models.resnet import resnet18, resnet50

# (name, width) of each final 1x1 conv, in output order; 80+64+80+3+27+2+1 = 257
COEFF_LAYOUT: tuple[tuple[str, int], ...] = (
    ("id", 80),
    ("exp", 64),
    ("tex", 80),
    ("angle", 3),
    ("gamma", 27),
    ("trans_xy", 2),
    ("trans_z", 1),
)
NUM_COEFFS = sum(w for _, w in COEFF_LAYOUT)

_BACKBONES = {"resnet18": resnet18, "resnet50": resnet50}


class ReconNet(nn.Module):
    """Face image -> 3DMM coefficients.

    Input: ``(B, 3, 224, 224)`` float, **RGB** in [0, 1], the face aligned by Deep3DFaceRecon's 5-point
    ``align_img`` crop. Output: ``(B, 257)`` = identity 80 | expression 64 | texture 80 | angle 3 (radians;
    x, y, z) | SH lighting 27 | translation 3 (x, y, z).

    ``use_last_fc=True`` is the other official head (a ``backbone.fc`` Linear to 257); the released
    ``epoch_20.pth`` uses ``False``. ``init_path`` (ImageNet init for training) is not supported: weights
    are loaded by ``facerest_cli.weights.loader``, never by the module.
    """

    def __init__(self, net_recon: str = "resnet50", use_last_fc: bool = False, init_path: str | None = None) -> None:
        super().__init__()
        if net_recon not in _BACKBONES:
            raise ValueError(f"net_recon must be one of {sorted(_BACKBONES)}, got {net_recon!r}")
        if init_path:
            raise ValueError(f"init_path={init_path!r}: models do no I/O; load weights with facerest_cli.weights.loader")
        self.use_last_fc = use_last_fc
        self.backbone = _BACKBONES[net_recon](num_classes=NUM_COEFFS if use_last_fc else None)
        if not use_last_fc:
            last_dim = self.backbone.out_channels
            self.final_layers = nn.ModuleList(nn.Conv2d(last_dim, w, kernel_size=1, bias=True) for _, w in COEFF_LAYOUT)
            # the official init: an untrained head predicts the mean face (all coefficients 0)
            for conv in self.final_layers:
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"ReconNet expects (B, 3, 224, 224) RGB in [0, 1], got {tuple(x.shape)}")
        feat = self.backbone(x)
        if self.use_last_fc:
            return feat
        return torch.cat([layer(feat) for layer in self.final_layers], dim=1).flatten(1)


def split_coeffs(coeffs: torch.Tensor) -> dict[str, torch.Tensor]:
    """``(B, 257)`` -> named views: id, exp, tex, angle, gamma (B, 27) and trans (B, 3)."""
    if coeffs.shape[-1] != NUM_COEFFS:
        raise ValueError(f"expected (..., {NUM_COEFFS}) coefficients, got {tuple(coeffs.shape)}")
    parts = dict(zip((n for n, _ in COEFF_LAYOUT), coeffs.split([w for _, w in COEFF_LAYOUT], dim=-1)))
    out = {k: parts[k] for k in ("id", "exp", "tex", "angle", "gamma")}
    out["trans"] = coeffs[..., -3:]
    return out


def d3dfr_resnet50(**overrides) -> ReconNet:
    """Deep3DFaceRecon ``ReconNetWrapper('resnet50', use_last_fc=False, init_path=None)``."""
    return ReconNet(**{"net_recon": "resnet50", "use_last_fc": False, "init_path": None, **overrides})


D3DFR_RESNET50 = ArchSpec(build=d3dfr_resnet50, inputs=(face(224),))

"""SGPN (Zhu et al., CVPR 2022 "Blind Face Restoration via Integrating Face Shape and Generative Priors"),
checkpoint-exact with TencentYoutuResearch/FaceRestoration-sgpn ``face_restoration/model_sgpn.py``
(``FullGenerator_SGPN``; keys ``netE.*``, ``netG.*``).

One GPEN encoder (``netE``, shared weights) encodes both the low-quality face and the rendered 3D face. The
generator's mapping MLP takes ``[z_LQ, z_3D, coeff]`` (256 + 256 + 257 = 769); each synthesis layer fuses the two
feature maps with a learned sigmoid mask (AFFB) and concatenates the result as its noise input.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Sequence

import torch
from torch import nn

from facerest_cli.models.arch import ArchSpec, TensorSpec, face
from facerest_cli.models.gpen import BLUR_TAPS, StyledConv, StyleSynthesis, add_encoder, run_encoder, stylegan_channels
from facerest_cli.models.stylegan2_ops import ConvLayer, EqualLinear, PixelNorm

__all__ = ["FullGeneratorSGPN", "GeneratorSGPN", "SGPNEncoder", "StyledConvAFFB", "sgpn"]

COEFF_DIM = 257  # Deep3DFaceRecon BFM09 coefficients (id 80, exp 64, tex 80, angle 3, gamma 27, trans 3)


class StyledConvAFFB(StyledConv):
    """StyledConv whose noise is ``m * f_LQ + (1 - m) * f_3D``, ``m = sigmoid(conv1x1([out, f_LQ, f_3D]))``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[float] = BLUR_TAPS,
    ):
        super().__init__(
            in_channels, out_channels, kernel_size, style_dim, upsample=upsample, blur_kernel=blur_kernel, isconcat=True
        )
        self.convs_mask = ConvLayer(out_channels * 3, out_channels, 1, bias=True, activate=False)

    def forward(
        self, x: torch.Tensor, style: torch.Tensor, feature_lq: torch.Tensor, feature_3d: torch.Tensor
    ) -> torch.Tensor:
        out = self.conv(x, style)
        mask = torch.sigmoid(self.convs_mask(torch.cat([out, feature_lq, feature_3d], dim=1)))
        fused = torch.lerp(feature_3d, feature_lq, mask)  # = mask * f_LQ + (1 - mask) * f_3D
        return self.activate(self.noise(out, fused))


class GeneratorSGPN(StyleSynthesis):
    """SGPN generator: mapping ``mlp`` = PixelNorm + 3 EqualLinear (769 -> 512 -> 512 -> 512, lr_mul 0.01) and a
    StyleGAN2 synthesis whose layers after ``conv1`` are ``StyledConvAFFB``."""

    def __init__(
        self,
        size: int = 512,
        style_dim: int = 512,
        channel_multiplier: int = 2,
        blur_kernel: Sequence[float] = BLUR_TAPS,
        lr_mlp: float = 0.01,
        z_dim: int = 769,
    ):
        mapping = nn.Sequential(
            PixelNorm(),
            EqualLinear(z_dim, style_dim, lr_mul=lr_mlp, activation=True),
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True),
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True),
        )

        def make_block(in_ch: int, out_ch: int, upsample: bool) -> nn.Module:
            return StyledConvAFFB(in_ch, out_ch, 3, style_dim, upsample=upsample, blur_kernel=blur_kernel)

        channels = stylegan_channels(channel_multiplier)
        super().__init__("mlp", mapping, size, style_dim, channels, make_block, blur_kernel)


class SGPNEncoder(nn.Module):
    """GPEN's encoder (``Enc_SGPN``): ``(B, 3, S, S)`` in ``[-1, 1]`` -> (code ``(B, style_dim)``, feature maps,
    4x4 first)."""

    def __init__(self, size: int = 512, style_dim: int = 256, channel_multiplier: int = 2):
        super().__init__()
        self.names = add_encoder(self, size, style_dim, stylegan_channels(channel_multiplier))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return run_encoder(self, self.names, x)


class FullGeneratorSGPN(nn.Module):
    """SGPN restorer (``FullGenerator_SGPN``); the official constructor takes no arguments (512, styles 256/512).

    ``forward(im_LR, im_D3D, coeff_D3D)``: ``im_LR`` the aligned LQ face and ``im_D3D`` the rendered 3DMM face,
    both ``(B, 3, size, size)`` RGB in ``[-1, 1]`` (``(x - 127.5) / 127.5``); ``coeff_D3D`` ``(B, 257)`` the
    Deep3DFaceRecon coefficients. Returns the raw image ``(B, 3, size, size)`` RGB, nominally ``[-1, 1]``
    (the official demo clamps it afterwards).
    """

    def __init__(
        self, size: int = 512, channel_multiplier: int = 2, encoder_style_dim: int = 256, style_dim: int = 512
    ):
        super().__init__()
        self.size = size
        self.netE = SGPNEncoder(size, encoder_style_dim, channel_multiplier)
        z_dim = 2 * encoder_style_dim + COEFF_DIM
        self.netG = GeneratorSGPN(size, style_dim, channel_multiplier, z_dim=z_dim)

    def forward(self, im_LR: torch.Tensor, im_D3D: torch.Tensor, coeff_D3D: torch.Tensor) -> torch.Tensor:
        want = (3, self.size, self.size)
        if im_LR.ndim != 4 or tuple(im_LR.shape[1:]) != want or im_D3D.shape != im_LR.shape:
            raise ValueError(f"SGPN expects im_LR and im_D3D of shape (B, 3, {self.size}, {self.size}), got "
                             f"{tuple(im_LR.shape)} and {tuple(im_D3D.shape)}")
        if coeff_D3D.ndim != 2 or coeff_D3D.shape != (im_LR.shape[0], COEFF_DIM):
            raise ValueError(f"SGPN expects coeff_D3D of shape (B, {COEFF_DIM}), got {tuple(coeff_D3D.shape)}")
        b = im_LR.shape[0]
        # One encoder pass over both images: same weights, twice the batch.
        code, feats = self.netE(torch.cat([im_LR, im_D3D.to(dtype=im_LR.dtype)], dim=0))
        z = torch.cat([code[:b], code[b:], coeff_D3D.to(dtype=code.dtype)], dim=1)
        w = self.netG.map_latent(z)
        lq = [f[:b] for f in feats]
        d3d = [f[b:] for f in feats]
        # Official indexing: conv1 takes the LQ 4x4 feature alone; resolution 8 * 2**k takes level k + 1 of both.
        return self.netG.synthesize(w, lq[0], list(zip(lq[1:], d3d[1:])))


def sgpn(**overrides: object) -> FullGeneratorSGPN:
    """SGPN: ``FullGenerator_SGPN()`` (size 512, encoder style 256, generator style 512, channel multiplier 2).

    Inputs/outputs as ``FullGeneratorSGPN.forward``.
    """
    return FullGeneratorSGPN(**overrides)  # type: ignore[arg-type]


def _restore(net, x: torch.Tensor, render: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
    # ``render`` is normalised like the face ([-1, 1]); ``coeff`` are D3DFR's 257 coefficients as regressed.
    return net(im_LR=x, im_D3D=render, coeff_D3D=coeff)


# ``prior``: the 3D-prior tensors the restorer call takes after the face, in order (facerest_cli.prior.types).
SGPN = ArchSpec(build=sgpn, call=_restore, meta=MappingProxyType({"prior": ("render", "coeff")}),
                inputs=(face(512), face(512), TensorSpec((1, 257))), bf16=True)

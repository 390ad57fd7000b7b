"""GPEN (Yang et al., CVPR 2021): a U-shaped encoder feeding a StyleGAN2 generator, checkpoint-exact with
yangxy/GPEN ``face_model/gpen_model.py`` (``FullGenerator``; keys ``generator.*``, ``ecd*``, ``final_linear``).

The encoder's feature maps replace StyleGAN's random noise: each synthesis layer concatenates
``noise.weight * feature`` (``isconcat=True``) to its output, so the forward is deterministic.
The StyleGAN2 building blocks here (``StyledConv``, ``ToRGB``, ``ConstantInput``, the encoder and the synthesis
skeleton) are reused by ``facerest_cli.models.sgpn``.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from facerest_cli.models.arch import ArchSpec, face
from facerest_cli.models.stylegan2_ops import (
    ConvLayer,
    EqualLinear,
    FusedLeakyReLU,
    ModulatedConv2d,
    PixelNorm,
    Upsample,
    float32_region,
)

__all__ = [
    "BLUR_TAPS",
    "ConstantInput",
    "FullGenerator",
    "Generator",
    "NoiseInjection",
    "StyleSynthesis",
    "StyledConv",
    "ToRGB",
    "add_encoder",
    "gpen_bfr_512",
    "run_encoder",
    "stylegan_channels",
]

BLUR_TAPS = (1, 3, 3, 1)


def stylegan_channels(channel_multiplier: int = 2, narrow: float = 1.0) -> dict[int, int]:
    """Feature channels per resolution, as the official ``channels`` table."""
    base = {4: 512, 8: 512, 16: 512, 32: 512}
    base.update({res: (16384 // res) * channel_multiplier for res in (64, 128, 256, 512, 1024, 2048)})
    return {res: int(c * narrow) for res, c in base.items()}


class NoiseInjection(nn.Module):
    """Adds (or, with ``isconcat``, concatenates on dim 1) ``weight * noise``; ``noise`` is an encoder feature."""

    def __init__(self, isconcat: bool = True):
        super().__init__()
        self.isconcat = isconcat
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        injected = self.weight.to(dtype=image.dtype) * noise.to(dtype=image.dtype)
        return torch.cat((image, injected), dim=1) if self.isconcat else image + injected


class ConstantInput(nn.Module):
    """The learned 4x4 start tensor ``input (1, C, 4, 4)``, broadcast to the batch."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated 3x3 conv -> noise injection (encoder feature) -> bias + leaky ReLU.

    ``(B, in, H, W)`` -> ``(B, out * (2 if isconcat else 1), H', W')``; ``noise``: ``(B, out, H', W')``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[float] = BLUR_TAPS,
        demodulate: bool = True,
        isconcat: bool = True,
    ):
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channels,
            out_channels,
            kernel_size,
            style_dim,
            demodulate=demodulate,
            upsample=upsample,
            blur_kernel=blur_kernel,
        )
        self.noise = NoiseInjection(isconcat)
        self.activate = FusedLeakyReLU(out_channels * (2 if isconcat else 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (no demodulation) + bias, plus the FIR-upsampled previous RGB ``skip``."""

    def __init__(
        self, in_channels: int, style_dim: int, upsample: bool = True, blur_kernel: Sequence[float] = BLUR_TAPS
    ):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias.to(dtype=x.dtype)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


BlockFactory = Callable[[int, int, bool], nn.Module]
"""``(in_channels, out_channels, upsample) -> block`` for the synthesis layers after ``conv1``."""


class StyleSynthesis(nn.Module):
    """StyleGAN2 synthesis skeleton shared by GPEN and SGPN, with the mapping MLP registered first.

    Layer order and key names are the official ones: ``<mapping_name>``, ``input``, ``conv1``, ``to_rgb1``,
    ``convs`` (two per resolution 8..size), ``to_rgbs``. Every layer gets the same latent ``w`` (no mixing).
    """

    def __init__(
        self,
        mapping_name: str,
        mapping: nn.Module,
        size: int,
        style_dim: int,
        channels: Mapping[int, int],
        make_block: BlockFactory,
        blur_kernel: Sequence[float] = BLUR_TAPS,
        isconcat: bool = True,
    ):
        super().__init__()
        self.mapping_name = mapping_name
        self.add_module(mapping_name, mapping)
        self.size = size
        self.style_dim = style_dim
        self.log_size = int(math.log2(size))
        self.n_latent = self.log_size * 2 - 2
        mult = 2 if isconcat else 1
        self.input = ConstantInput(channels[4])
        self.conv1 = StyledConv(channels[4], channels[4], 3, style_dim, blur_kernel=blur_kernel, isconcat=isconcat)
        self.to_rgb1 = ToRGB(channels[4] * mult, style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_ch = channels[4]
        for i in range(3, self.log_size + 1):
            out_ch = channels[2**i]
            self.convs.append(make_block(in_ch * mult, out_ch, True))
            self.convs.append(make_block(out_ch * mult, out_ch, False))
            self.to_rgbs.append(ToRGB(out_ch * mult, style_dim))
            in_ch = out_ch

    def map_latent(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, z_dim)`` -> ``w (B, style_dim)``, float32 (the lr_mul=0.01 MLP overflows float16)."""
        with float32_region(z.device):
            return getattr(self, self.mapping_name)(z.float())

    def synthesize(
        self, w: torch.Tensor, conv1_noise: torch.Tensor, level_inputs: Sequence[tuple[torch.Tensor, ...]]
    ) -> torch.Tensor:
        """Image ``(B, 3, size, size)`` from ``w``; ``level_inputs[k]`` feeds both convs at resolution ``8 * 2**k``."""
        out = self.conv1(self.input(w.shape[0]), w, conv1_noise)
        skip = self.to_rgb1(out, w)
        for k, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * k](out, w, *level_inputs[k])
            out = self.convs[2 * k + 1](out, w, *level_inputs[k])
            skip = to_rgb(out, w, skip)
        return skip


class Generator(StyleSynthesis):
    """GPEN's StyleGAN2 generator: 8-layer mapping MLP ``style`` (lr_mul 0.01) + synthesis with concat noise."""

    def __init__(
        self,
        size: int,
        style_dim: int,
        n_mlp: int,
        channel_multiplier: int = 2,
        blur_kernel: Sequence[float] = BLUR_TAPS,
        lr_mlp: float = 0.01,
        isconcat: bool = True,
        narrow: float = 1.0,
    ):
        mapping = nn.Sequential(
            PixelNorm(), *(EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp))
        )

        def make_block(in_ch: int, out_ch: int, upsample: bool) -> nn.Module:
            return StyledConv(
                in_ch, out_ch, 3, style_dim, upsample=upsample, blur_kernel=blur_kernel, isconcat=isconcat
            )

        channels = stylegan_channels(channel_multiplier, narrow)
        super().__init__("style", mapping, size, style_dim, channels, make_block, blur_kernel, isconcat)
        self.n_mlp = n_mlp
        self.channels = channels


def add_encoder(
    owner: nn.Module,
    size: int,
    style_dim: int,
    channels: Mapping[int, int],
    blur_kernel: Sequence[float] = BLUR_TAPS,
) -> list[str]:
    """Register GPEN's encoder on ``owner`` as ``ecd0..ecd{log2(size)-2}`` + ``final_linear`` (the official flat
    layout); return the stage names, finest first."""
    log_size = int(math.log2(size))
    names = [f"ecd{i}" for i in range(log_size - 1)]
    owner.add_module(names[0], nn.Sequential(ConvLayer(3, channels[size], 1)))
    in_ch = channels[size]
    for i in range(log_size, 2, -1):
        out_ch = channels[2 ** (i - 1)]
        stage = ConvLayer(in_ch, out_ch, 3, downsample=True, blur_kernel=blur_kernel)
        owner.add_module(names[log_size - i + 1], nn.Sequential(stage))
        in_ch = out_ch
    owner.add_module("final_linear", nn.Sequential(EqualLinear(channels[4] * 4 * 4, style_dim, activation=True)))
    return names


def run_encoder(owner: nn.Module, names: Sequence[str], x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Encoder registered by ``add_encoder``: ``x (B, 3, S, S)`` -> (code ``(B, style_dim)`` float32, feature maps
    coarsest (4x4) first)."""
    feats = []
    for name in names:
        x = getattr(owner, name)(x)
        feats.append(x)
    with float32_region(x.device):
        code = owner.final_linear(x.flatten(1).float())
    return code, feats[::-1]


class FullGenerator(nn.Module):
    """GPEN blind face restoration network (``FullGenerator`` of yangxy/GPEN).

    Input ``(B, 3, size, size)`` float, RGB in ``[-1, 1]`` (``(x/255 - 0.5) / 0.5``, FFHQ-aligned face).
    Output ``(image, latent)``: ``image`` ``(B, 3, size, size)`` RGB, nominally ``[-1, 1]`` but not clamped;
    ``latent`` is ``w`` repeated ``(B, n_latent, style_dim)`` when ``return_latents`` else ``None``
    (official: ``out, _ = net(x)``).
    """

    def __init__(
        self,
        size: int,
        style_dim: int,
        n_mlp: int,
        channel_multiplier: int = 2,
        blur_kernel: Sequence[float] = BLUR_TAPS,
        lr_mlp: float = 0.01,
        isconcat: bool = True,
        narrow: float = 1.0,
    ):
        super().__init__()
        self.size = size
        self.generator = Generator(size, style_dim, n_mlp, channel_multiplier, blur_kernel, lr_mlp, isconcat, narrow)
        channels = stylegan_channels(channel_multiplier, narrow)
        self.encoder_names = add_encoder(self, size, style_dim, channels, blur_kernel)

    def forward(self, x: torch.Tensor, return_latents: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != self.size or x.shape[3] != self.size:
            raise ValueError(f"GPEN expects (B, 3, {self.size}, {self.size}), got {tuple(x.shape)}")
        code, feats = run_encoder(self, self.encoder_names, x)
        w = self.generator.map_latent(code)
        # Official noise list: conv1 gets the 4x4 feature, both convs of each later resolution get that
        # resolution's feature (so the finest encoder feature feeds the last two layers).
        image = self.generator.synthesize(w, feats[0], [(f,) for f in feats[1:]])
        latent = w[:, None, :].repeat(1, self.generator.n_latent, 1) if return_latents else None
        return image, latent


def gpen_bfr_512(**overrides: object) -> FullGenerator:
    """GPEN-BFR-512: ``FullGenerator(512, 512, 8, channel_multiplier=2, narrow=1)``, lr_mlp 0.01, isconcat.

    Input/output RGB ``(B, 3, 512, 512)`` in ``[-1, 1]``; see ``FullGenerator``.
    """
    kwargs: dict = dict(size=512, style_dim=512, n_mlp=8, channel_multiplier=2, narrow=1, lr_mlp=0.01, isconcat=True)
    kwargs.update(overrides)
    return FullGenerator(**kwargs)


def _restore(net: FullGenerator, x: torch.Tensor) -> torch.Tensor:
    return net(x)[0]


GPEN_BFR_512 = ArchSpec(build=gpen_bfr_512, call=_restore, inputs=(face(512),), bf16=True)

"""The IDDPM pixel-space UNet of DifFace (``iddpm_ffhq512``) and its 3D-prior extension from 3Diffusion.

Checkpoint-exact with zsyOAOA/DifFace ``models/unet.py:UNetModel`` (guided-diffusion / improved-DDPM UNet:
scale-shift norm, learned-range sigma, 6 output channels = epsilon + variance interpolation) and, with
``threed=True``, with 838143396/3Diffusion ``models/unet.py:UNetModel``, which adds

* ``lq_blocks``: a copy of encoder levels 0-3 (12 blocks) run on the 3D-prior render;
* ``cross_list``: four ``TafbBlock`` time-aware fusion blocks, applied after input blocks 2, 5, 8 and 11, that
  fuse the render features into the noisy-image features with adaptive LayerNorm modulation and SE gates.

The call is the official one: ``net(x, t)``, ``x`` the noisy image ``x_t`` ``(B, 3, H, W)`` in the ``[-1, 1]``
image scale (with ``threed``: ``(B, 9, H, W)`` = ``cat[x_t, render, render]``, render RGB in ``[0, 1]``, the third
chunk unused), ``t`` ``(B,)`` int64 ORIGINAL 1000-step timesteps. Output ``(B, 6, H, W)`` float32.

Batch independence: with a batch of a fixed shape, a face gets the same bits in any position (measured at 64x64
and 512x512, ``tests/models/test_iddpm_unet.py``); across batch SIZES convolution kernels may differ in the last
bits, which is why ``facerest_cli.restore.diffusion`` always calls the UNet with one fixed batch size.

Precision: GroupNorm runs in float32 whatever the autocast dtype (the official ``GroupNorm32``), and attention
softmax in float32 (as the official ``QKVAttentionLegacy``), so a bf16/fp16 autocast only lowers convolutions,
linears and matmuls.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from facerest_cli.models.arch import ArchSpec

__all__ = ["UNetModel", "TafbBlock", "difface_unet", "tdiffusion_unet", "timestep_embedding"]

# Where the 3D branch is fused: after input block i when i < 12 and (i - 2) % 3 == 0 (official rule).
_FUSE_AFTER = (2, 5, 8, 11)
_LQ_LEVELS = 4  # lq_blocks copy encoder levels 0..3


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 and returned in the input dtype (official ``GroupNorm32``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps)
        return y.to(x.dtype)


class RowwiseLinear(nn.Linear):
    """``nn.Linear`` (same parameters and keys) applied one batch row at a time.

    A CPU GEMM picks its blocking by the number of rows, so row i of a batched product can differ in the last
    bits with the batch size and the row's position (measured: every row differs between batch 1 and batch 8).
    Running the time-embedding MLPs row by row takes them out of the question at about 0.01% of the FLOPs; the
    convolutions are kept batch-independent by calling the UNet with one fixed batch shape (see
    ``facerest_cli.restore.diffusion``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1:
            return super().forward(x)
        return torch.cat([F.linear(row, self.weight, self.bias) for row in x.split(1)])


def normalization(channels: int) -> GroupNorm32:
    return GroupNorm32(32, channels)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """``(B,)`` timesteps -> ``(B, dim)`` float32 sinusoidal embedding ``[cos | sin]`` (official op order)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class ResBlock(nn.Module):
    """GN-SiLU-conv, then GN modulated by the time embedding (``use_scale_shift_norm``)-SiLU-conv, plus skip."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None,
                 use_scale_shift_norm: bool = True) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            normalization(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(
            nn.SiLU(), RowwiseLinear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        # Index 2 is the official (eval-time identity) Dropout: kept so the conv stays ``out_layers.3``.
        self.out_layers = nn.Sequential(
            normalization(out_channels), nn.SiLU(), nn.Identity(), nn.Conv2d(out_channels, out_channels, 3, padding=1)
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        emb_out = self.emb_layers(emb).to(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = torch.chunk(emb_out, 2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[3](self.out_layers[1](h))
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Spatial self-attention, heads of ``num_head_channels``, legacy q/k/v order (split heads, then q/k/v)."""

    def __init__(self, channels: int, num_head_channels: int) -> None:
        super().__init__()
        if channels % num_head_channels:
            raise ValueError(f"{channels} channels are not divisible by num_head_channels {num_head_channels}")
        self.num_heads = channels // num_head_channels
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        bs, width, length = qkv.shape
        ch = width // (3 * self.num_heads)
        q, k, v = qkv.reshape(bs * self.num_heads, ch * 3, length).split(ch, dim=1)
        scale = 1 / math.sqrt(math.sqrt(ch))  # on q and k separately, as officially (fp16-safe)
        weight = torch.bmm((q * scale).transpose(1, 2), k * scale)  # (b*heads, t, s)
        weight = torch.softmax(weight.float(), dim=-1).to(weight.dtype)
        a = torch.bmm(v, weight.transpose(1, 2))  # (b*heads, ch, t)
        h = self.proj_out(a.reshape(bs, -1, length))
        return (x + h).reshape(b, c, *spatial)


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TimestepEmbedSequential(nn.Sequential):
    """A Sequential whose ResBlocks also receive the time embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of ``(B, C, H, W)`` (NAFNet style), eps 1e-6, official op order."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / (var + self.eps).sqrt()
        return self.weight.view(1, c, 1, 1) * y + self.bias.view(1, c, 1, 1)


def _se(c: int) -> nn.Sequential:
    """Squeeze-excitation gate: ``(B, c, H, W)`` -> ``(B, c, 1, 1)`` in (0, 1)."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c // 2, 1), nn.ReLU(), nn.Conv2d(c // 2, c, 1), nn.Sigmoid()
    )


class TafbBlock(nn.Module):
    """3Diffusion's Time-Aware Fusion Block: fuses 3D-prior features ``f3d`` into image features ``fimg``.

    An MLP on the time embedding gives five ``(B, c)`` vectors: shift/scale for the LayerNorm'd 3D features,
    the weights of the image and 3D paths in the residual sum, and the gate of the feed-forward branch. Both
    paths go through 1x1 + depthwise 3x3 conv + GELU; the 3D path's SE gate scales both, a 1x1 conv fuses them.
    (``DW_Expand`` = 1 and ``FFN_Expand`` = 2 in the released model.)
    """

    def __init__(self, c: int, c_out: int, emb_channels: int, ffn_expand: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.conv1_e = nn.Conv2d(c, c, 1)
        self.conv2_e = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.conv3 = nn.Conv2d(2 * c, c, 1)
        self.se_1 = _se(c)
        self.se_2 = _se(c)
        self.gelu = nn.GELU()
        self.conv4 = nn.Conv2d(c, ffn_expand * c, 1)
        self.conv5 = nn.Conv2d(ffn_expand * c, c_out, 1)
        self.conv_y_side = nn.Conv2d(c, c_out, 1)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), RowwiseLinear(emb_channels, 5 * c))
        self.norm1 = LayerNorm2d(c)
        self.norm1_e = LayerNorm2d(c)
        self.norm2 = LayerNorm2d(c)

    def forward(self, f3d: torch.Tensor, fimg: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        mods = [m[..., None, None] for m in self.adaLN_modulation(emb).chunk(5, dim=1)]
        # Official names: shift_msa, scale_msa, shift_msa2, scale_msa2, gate_ffn.
        shift_3d, scale_3d, w_3d, w_img, gate_ffn = mods
        x = self.gelu(self.conv2(self.conv1(self.norm1(fimg))))
        x3 = self.norm1_e(f3d) * (1 + scale_3d) + shift_3d
        x3 = self.gelu(self.conv2_e(self.conv1_e(x3)))
        x = x * self.se_1(x3)
        x3 = x3 * self.se_2(x3)
        x = self.conv3(torch.cat((x, x3), dim=1))
        y = fimg * w_img + x + f3d * w_3d
        x = self.conv5(self.gelu(self.conv4(self.norm2(y))))
        return self.conv_y_side(y) + x * gate_ffn


class UNetModel(nn.Module):
    """IDDPM UNet (see the module docstring for the call); ``threed`` adds 3Diffusion's render branch.

    Only the released configuration family is built: 2-D, ``conv_resample``, no class labels,
    ``resblock_updown=False``, legacy attention order, ``num_head_channels`` heads.
    """

    def __init__(
        self,
        image_size: int = 512,
        in_channels: int = 3,
        model_channels: int = 32,
        out_channels: int = 6,
        num_res_blocks: Sequence[int] | int = (1, 2, 2, 2, 2, 3, 4),
        attention_resolutions: Sequence[int] = (32, 16, 8),
        dropout: float = 0.0,
        channel_mult: Sequence[int] = (1, 2, 4, 8, 8, 16, 16),
        num_head_channels: int = 64,
        use_scale_shift_norm: bool = True,
        threed: bool = False,
        conv_resample: bool = True,
        dims: int = 2,
        use_fp16: bool = False,
        resblock_updown: bool = False,
        use_new_attention_order: bool = False,
    ) -> None:
        super().__init__()
        if (conv_resample, dims, resblock_updown, use_new_attention_order) != (True, 2, False, False):
            raise ValueError("only conv_resample=True, dims=2, resblock_updown=False, legacy attention are built")
        if isinstance(num_res_blocks, int):
            num_res_blocks = [num_res_blocks] * len(channel_mult)
        if len(num_res_blocks) != len(channel_mult):
            raise ValueError(f"num_res_blocks {num_res_blocks} and channel_mult {channel_mult} differ in length")
        # dropout and use_fp16 are accepted for config compatibility: eval-time dropout is the identity, and
        # precision is the runtime's choice (autocast), not the module's.
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.threed = threed
        self.size_multiple = 2 ** (len(channel_mult) - 1)  # H and W must survive every downsampling
        emb_dim = model_channels * 4
        self.time_embed = nn.Sequential(
            RowwiseLinear(model_channels, emb_dim), nn.SiLU(), RowwiseLinear(emb_dim, emb_dim)
        )

        ch = input_ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        # Registered right after input_blocks, so the state dict lists them where the official file does.
        if threed:
            self.lq_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
            self.cross_list = nn.ModuleList()
        chans = [ch]
        ds = image_size
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks[level]):
                out = int(mult * model_channels)
                branches = 2 if threed and level < _LQ_LEVELS else 1  # the trunk, and the lq_blocks copy
                blocks: list[list[nn.Module]] = [
                    [ResBlock(ch, emb_dim, out, use_scale_shift_norm)] for _ in range(branches)
                ]
                ch = out
                if ds in attention_resolutions:
                    for b in blocks:
                        b.append(AttentionBlock(ch, num_head_channels))
                self.input_blocks.append(TimestepEmbedSequential(*blocks[0]))
                if branches == 2:
                    self.lq_blocks.append(TimestepEmbedSequential(*blocks[1]))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                if threed and level < _LQ_LEVELS:
                    self.lq_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                chans.append(ch)
                ds //= 2
        if threed:
            if len(self.lq_blocks) < _FUSE_AFTER[-1] + 1:
                raise ValueError(f"the 3D branch needs 12 encoder blocks in levels 0-3; got {len(self.lq_blocks)}")
            for i in _FUSE_AFTER:
                self.cross_list.append(TafbBlock(chans[i], chans[i], emb_dim))

        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, emb_dim, None, use_scale_shift_norm),
            AttentionBlock(ch, num_head_channels),
            ResBlock(ch, emb_dim, None, use_scale_shift_norm),
        )
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks[level] + 1):
                out = int(model_channels * mult)
                layers = [ResBlock(ch + chans.pop(), emb_dim, out, use_scale_shift_norm)]
                ch = out
                if ds in attention_resolutions:
                    layers.append(AttentionBlock(ch, num_head_channels))
                if level and i == num_res_blocks[level]:
                    layers.append(Upsample(ch))
                    ds *= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(normalization(ch), nn.SiLU(), nn.Conv2d(input_ch, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        want = self.in_channels * (3 if self.threed else 1)
        m = self.size_multiple
        if x.ndim != 4 or x.shape[1] != want or x.shape[2] % m or x.shape[3] % m:
            raise ValueError(f"UNetModel expects (B, {want}, H, W) with H, W multiples of {m}; got {tuple(x.shape)}")
        if timesteps.shape != (x.shape[0],):
            raise ValueError(f"timesteps must be ({x.shape[0]},); got {tuple(timesteps.shape)}")
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        if self.threed:
            h, x3d, _ = x.chunk(3, dim=1)
            condition = []
            for module in self.lq_blocks:
                x3d = module(x3d, emb)
                condition.append(x3d)
        else:
            h = x
        hs = []
        fuse = 0
        for i, module in enumerate(self.input_blocks):
            h = module(h, emb)
            if self.threed and i in _FUSE_AFTER:
                h = self.cross_list[fuse](condition[i], h, emb)
                fuse += 1
            hs.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


_IDDPM_FFHQ512 = dict(
    image_size=512, in_channels=3, model_channels=32, out_channels=6, attention_resolutions=(32, 16, 8),
    dropout=0.0, channel_mult=(1, 2, 4, 8, 8, 16, 16), num_res_blocks=(1, 2, 2, 2, 2, 3, 4),
    num_head_channels=64, use_scale_shift_norm=True,
)


def difface_unet(**overrides) -> UNetModel:
    """DifFace ``iddpm_ffhq512`` (``configs/sample/iddpm_ffhq512_swinir.yaml`` ``model``), 159.8 M parameters."""
    return UNetModel(**{**_IDDPM_FFHQ512, **overrides})


def tdiffusion_unet(**overrides) -> UNetModel:
    """3Diffusion's UNet (Xiaobin-Lu/3Diffusion ``configs/sample_config.yaml``): the DifFace trunk + 3D branch."""
    return UNetModel(**{**_IDDPM_FFHQ512, "threed": True, **overrides})


def _denoise(net: UNetModel, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return net(x, t)


# ``runtime``: these nets are not one-call restorers; facerest_cli.restore.diffusion runs their sampling loop.
# ``prior``: 3Diffusion takes the 3D-prior render (facerest_cli.prior.types.SgpnPrior.render).
DIFFACE_UNET = ArchSpec(build=difface_unet, call=_denoise, meta=MappingProxyType({"runtime": "diffusion"}))
TDIFFUSION_UNET = ArchSpec(build=tdiffusion_unet, call=_denoise,
                           meta=MappingProxyType({"runtime": "diffusion", "prior": ("render",)}))

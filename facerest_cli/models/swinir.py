"""SwinIR (Liang et al., ICCVW 2021) as DifFace's first-stage restorer ``swinir_restoration512_L1``.

Checkpoint-exact with zsyOAOA/DifFace ``models/swinir.py`` (class ``SwinIR``), which 3Diffusion ships unchanged
(its file ``General_Face_ffhq512.pth`` has the same keys). Only the path DifFace's config uses is built here:
``PixelUnshuffle(8)`` in front (a 512x512 face becomes a 64x64 token grid), eight residual Swin groups, and the
``'nearest+conv'`` x8 reconstruction back to 512x512.

Two persistent buffers are architecture-defined and sit in the official file: every block's
``attn.relative_position_index`` and, for the 24 shifted blocks, ``attn_mask`` (built for the 64x64 token grid).
They are computed here, never loaded from anywhere else; a strict load then checks they equal the file's.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SwinIR", "difface_swinir", "relative_position_index", "shifted_window_mask"]

# The mask value the official code puts between tokens that came from different regions after the cyclic shift.
_MASKED = -100.0


def relative_position_index(window: int) -> torch.Tensor:
    """``(window², window²)`` int64: the row of the bias table for each (query, key) token pair of a window.

    Token ``(h, w)`` is ``h * window + w``; the pair's offset ``(dh, dw)`` in ``[-(window-1), window-1]`` maps to
    ``(dh + window - 1) * (2 * window - 1) + (dw + window - 1)``, as the official ``WindowAttention``.
    """
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def _partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``(B, H, W, C)`` -> ``(B * H/window * W/window, window, window, C)``, windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)


def _reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of ``_partition``: ``(B * nW, window, window, C)`` -> ``(B, H, W, C)``."""
    b = windows.shape[0] // ((h // window) * (w // window))
    x = windows.view(b, h // window, w // window, window, window, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


def shifted_window_mask(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """``(nW, window², window²)`` float32 attention mask of shifted-window attention on an ``h``x``w`` token grid.

    After the cyclic shift by ``-shift``, a window can hold tokens of up to four image regions; pairs from
    different regions get -100 (softmax weight ~0), pairs from one region 0.
    """
    region = torch.zeros(1, h, w, 1)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for hs in cuts:
        for ws in cuts:
            region[:, hs, ws, :] = label
            label += 1
    windows = _partition(region, window).view(-1, window * window)
    diff = windows.unsqueeze(1) - windows.unsqueeze(2)
    return diff.masked_fill(diff != 0, _MASKED).masked_fill(diff == 0, 0.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ``window``x``window`` windows with a learned relative position bias."""

    def __init__(self, dim: int, window: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x``: ``(B*nW, window², C)``; ``mask``: ``(nW, window², window²)`` or None."""
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.num_heads, n, n) + mask.to(attn.dtype).unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        # Softmax in float32 even under autocast: a bf16 row sum over 64 tokens loses the small weights.
        attn = torch.softmax(attn.float(), dim=-1).to(v.dtype)
        return self.proj((attn @ v).transpose(1, 2).reshape(bw, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinTransformerBlock(nn.Module):
    """LayerNorm -> (shifted) window attention -> residual, LayerNorm -> MLP -> residual, on ``(B, H*W, C)``.

    ``attn_mask`` (shifted blocks only) is a persistent buffer for the construction-time token grid
    ``resolution``, as officially; another grid size gets its mask computed on the fly.
    """

    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, window: int, shift: int,
                 mlp_ratio: float) -> None:
        super().__init__()
        self.resolution = tuple(resolution)
        if min(self.resolution) <= window:  # the official rule: a grid no larger than a window is one window
            shift, window = 0, min(self.resolution)
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shifted_window_mask(*self.resolution, window, shift) if shift > 0 else None
        self.register_buffer("attn_mask", mask)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        if self.shift > 0:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = _partition(x, self.window).view(-1, self.window * self.window, c)
        if self.shift == 0:
            mask = None
        elif tuple(size) == self.resolution:
            mask = self.attn_mask
        else:
            mask = shifted_window_mask(h, w, self.window, self.shift).to(x.device)
        out = self.attn(windows, mask).view(-1, self.window, self.window, c)
        x = _reverse(out, self.window, h, w)
        if self.shift > 0:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + x.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class BasicLayer(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, num_heads: int, window: int,
                 mlp_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, resolution, num_heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, size)
        return x


class RSTB(nn.Module):
    """Residual Swin Transformer Block: Swin blocks, then a 3x3 conv on the token grid, plus the input."""

    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, num_heads: int, window: int,
                 mlp_ratio: float) -> None:
        super().__init__()
        self.residual_group = BasicLayer(dim, resolution, depth, num_heads, window, mlp_ratio)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        y = self.residual_group(x, size).transpose(1, 2).reshape(b, c, *size)
        return self.conv(y).flatten(2).transpose(1, 2) + x


class _PatchEmbed(nn.Module):
    """Holds only the official ``patch_embed.norm`` (patch size 1: flattening is the embedding)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)


class SwinIR(nn.Module):
    """SwinIR with DifFace's ``'nearest+conv'`` reconstruction and a pixel-unshuffle front end.

    Input: ``(B, 3, H, W)`` float RGB in ``[0, 1]`` (not normalised; the network subtracts its own RGB mean),
    H and W multiples of ``sf * window_size`` (64: 512x512 is the trained size). Output: ``(B, 3, H, W)`` RGB,
    nominally ``[0, 1]`` but NOT clamped (DifFace clamps it before diffusing).
    """

    def __init__(
        self,
        img_size: int = 64,
        patch_size: int = 1,
        in_chans: int = 3,
        embed_dim: int = 180,
        depths: Sequence[int] = (6,) * 8,
        num_heads: Sequence[int] = (6,) * 8,
        window_size: int = 8,
        mlp_ratio: float = 2.0,
        sf: int = 8,
        img_range: float = 1.0,
        upsampler: str = "nearest+conv",
        resi_connection: str = "1conv",
        unshuffle: bool = True,
        unshuffle_scale: int = 8,
    ) -> None:
        super().__init__()
        if (patch_size, in_chans, upsampler, resi_connection, unshuffle) != (1, 3, "nearest+conv", "1conv", True):
            raise ValueError(
                "only DifFace's SwinIR variant is built (patch_size 1, 3 channels, upsampler 'nearest+conv', "
                f"resi_connection '1conv', unshuffle); got {patch_size}, {in_chans}, {upsampler!r}, "
                f"{resi_connection!r}, {unshuffle}"
            )
        if sf not in (2, 4, 8) or unshuffle_scale != sf:
            raise ValueError(f"sf must be 2, 4 or 8 and equal unshuffle_scale; got {sf}, {unshuffle_scale}")
        num_feat = 64
        self.sf = sf
        self.window_size = window_size
        self.img_range = img_range
        # The official keeps this as a plain attribute (not in the file); a non-persistent buffer follows .to().
        self.register_buffer("mean", torch.tensor((0.4488, 0.4371, 0.4040)).view(1, 3, 1, 1), persistent=False)

        self.conv_first = nn.Sequential(nn.PixelUnshuffle(sf), nn.Conv2d(in_chans * sf * sf, embed_dim, 3, 1, 1))
        self.patch_embed = _PatchEmbed(embed_dim)
        resolution = (img_size, img_size)
        self.layers = nn.ModuleList(
            RSTB(embed_dim, resolution, depths[i], num_heads[i], window_size, mlp_ratio) for i in range(len(depths))
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        # nn.LeakyReLU() here has the default slope 0.01, unlike ``lrelu`` (0.2): both as officially.
        self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU())
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        if sf >= 4:
            self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        if sf == 8:
            self.conv_up3 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[2], x.shape[3])
        b, c = x.shape[:2]
        t = self.patch_embed.norm(x.flatten(2).transpose(1, 2))
        for layer in self.layers:
            t = layer(t, size)
        return self.norm(t).transpose(1, 2).reshape(b, c, *size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step = self.sf * self.window_size
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % step or x.shape[3] % step:
            raise ValueError(f"SwinIR expects (B, 3, H, W) with H, W multiples of {step}; got {tuple(x.shape)}")
        x = (x - self.mean.to(x.dtype)) * self.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self.forward_features(x)) + x
        x = self.conv_before_upsample(x)
        x = self.lrelu(self.conv_up1(F.interpolate(x, scale_factor=2, mode="nearest")))
        if self.sf >= 4:
            x = self.lrelu(self.conv_up2(F.interpolate(x, scale_factor=2, mode="nearest")))
        if self.sf == 8:
            x = self.lrelu(self.conv_up3(F.interpolate(x, scale_factor=2, mode="nearest")))
        x = self.conv_last(self.lrelu(self.conv_hr(x)))
        return x / self.img_range + self.mean.to(x.dtype)


def difface_swinir(**overrides) -> SwinIR:
    """DifFace's ``swinir_restoration512_L1`` (``configs/sample/iddpm_ffhq512_swinir.yaml`` ``model_ir``)."""
    args = dict(
        img_size=64, patch_size=1, in_chans=3, embed_dim=180, depths=(6,) * 8, num_heads=(6,) * 8,
        window_size=8, mlp_ratio=2, sf=8, img_range=1.0, upsampler="nearest+conv", resi_connection="1conv",
        unshuffle=True, unshuffle_scale=8,
    )
    args.update(overrides)
    return SwinIR(**args)

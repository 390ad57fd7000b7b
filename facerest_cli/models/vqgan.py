"""VQGAN encoder, codebook and decoder in CodeFormer's layout (``basicsr/archs/vqgan_arch.py``).

State-dict keys are the official ones: ``encoder.blocks.N.*``, ``quantize.embedding.weight``,
``generator.blocks.N.*``. Blocks are kept in one flat ``ModuleList`` per side because CodeFormer taps the
encoder and fuses into the decoder by block index.

Feature maps are ``(B, C, H, W)`` float tensors; the encoder takes an RGB image in [-1, 1] and the decoder
returns one (unclamped). Attention runs through ``F.scaled_dot_product_attention`` so that its softmax is
computed safely when the runtime casts activations to float16 / bfloat16.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """The VQGAN normalisation: 32 groups, eps 1e-6, affine."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm -> swish -> 3x3 conv) x 2, 1x1 ``conv_out`` skip when C changes."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.norm1 = group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1)
        self.norm2 = group_norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, kernel_size=3, stride=1, padding=1)
        self.conv_out = nn.Conv2d(in_ch, out_ch, kernel_size=1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        skip = x if self.conv_out is None else self.conv_out(x)
        return h + skip


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions, 1x1-conv projections, residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        hn = self.norm(x)

        def tokens(t: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 1, H*W, C): one head of width C
            return t.flatten(2).transpose(1, 2).unsqueeze(1)

        # SDPA's default scale 1/sqrt(C) is the official c**-0.5
        att = F.scaled_dot_product_attention(tokens(self.q(hn)), tokens(self.k(hn)), tokens(self.v(hn)))
        # The transposed view is channels-last with a batch stride that depends on B; oneDNN then picks
        # different 1x1-conv kernels for B=1 and B>1, and the decoder amplifies that rounding ~100x. A plain
        # NCHW copy (16x16 positions: negligible) makes a face's result independent of its batch.
        att = att.squeeze(1).transpose(1, 2).reshape(b, c, h, w).contiguous()
        return x + self.proj_out(att)


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding one zero row/column at the bottom/right only (the official asymmetry)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class VQEncoder(nn.Module):
    """Image ``(B, in_ch, S, S)`` in [-1, 1] -> latent ``(B, emb_dim, S / 2**(L-1), S / 2**(L-1))``, L = len(ch_mult).

    ``blocks``: stem conv; per level ``res_blocks`` ResBlocks (+ AttnBlock at ``attn_resolutions``) and a
    Downsample except after the last level; then ResBlock, AttnBlock, ResBlock, GroupNorm, conv. The final
    GroupNorm is followed directly by the conv, with no swish, as in the official code.
    """

    def __init__(
        self,
        in_ch: int,
        nf: int,
        emb_dim: int,
        ch_mult: Sequence[int],
        res_blocks: int,
        resolution: int,
        attn_resolutions: Sequence[int],
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(in_ch, nf, kernel_size=3, stride=1, padding=1)]
        ch, res = nf, resolution
        for level, mult in enumerate(ch_mult):
            for _ in range(res_blocks):
                blocks.append(ResBlock(ch, nf * mult))
                ch = nf * mult
                if res in attn_resolutions:
                    blocks.append(AttnBlock(ch))
            if level != len(ch_mult) - 1:
                blocks.append(Downsample(ch))
                res //= 2
        blocks += [ResBlock(ch, ch), AttnBlock(ch), ResBlock(ch, ch), group_norm(ch)]
        blocks.append(nn.Conv2d(ch, emb_dim, kernel_size=3, stride=1, padding=1))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, taps: Sequence[int] = ()) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """The latent, and the output of each block whose index is in ``taps`` (skip features for a decoder)."""
        feats: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in taps:
                feats[i] = x
        return x, feats


class VQGenerator(nn.Module):
    """Latent ``(B, emb_dim, s, s)`` -> RGB ``(B, 3, s * 2**(L-1), ...)``, roughly [-1, 1] but not clamped.

    ``blocks``: stem conv, ResBlock, AttnBlock, ResBlock; per level from the deepest ``res_blocks`` ResBlocks
    (+ AttnBlock at ``attn_resolutions``) and an Upsample except after the last; then GroupNorm and conv
    (again no swish between them).
    """

    def __init__(
        self,
        nf: int,
        emb_dim: int,
        ch_mult: Sequence[int],
        res_blocks: int,
        img_size: int,
        attn_resolutions: Sequence[int],
    ) -> None:
        super().__init__()
        ch = nf * ch_mult[-1]
        res = img_size // 2 ** (len(ch_mult) - 1)
        blocks: list[nn.Module] = [nn.Conv2d(emb_dim, ch, kernel_size=3, stride=1, padding=1)]
        blocks += [ResBlock(ch, ch), AttnBlock(ch), ResBlock(ch, ch)]
        for level in reversed(range(len(ch_mult))):
            for _ in range(res_blocks):
                blocks.append(ResBlock(ch, nf * ch_mult[level]))
                ch = nf * ch_mult[level]
                if res in attn_resolutions:
                    blocks.append(AttnBlock(ch))
            if level != 0:
                blocks.append(Upsample(ch))
                res *= 2
        blocks += [group_norm(ch), nn.Conv2d(ch, 3, kernel_size=3, stride=1, padding=1)]
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class Codebook(nn.Module):
    """The VQ codebook (``embedding.weight``: ``(codebook_size, emb_dim)``); inference only needs the lookup."""

    def __init__(self, codebook_size: int, emb_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, emb_dim)
        # the official initialisation; only matters for an untrained module
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)

    def lookup(self, indices: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Code indices ``(B, height*width)`` int64 (row-major positions) -> features ``(B, emb_dim, height, width)``.

        A gather returns the exact codebook rows, as the official one-hot matmul does in float32.
        """
        feat = F.embedding(indices, self.embedding.weight)  # (B, H*W, C)
        # a plain NCHW copy, not the channels-last view: see AttnBlock on batch-dependent kernel choice
        return feat.transpose(1, 2).reshape(indices.shape[0], -1, height, width).contiguous()

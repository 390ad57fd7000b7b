"""CodeFormer (Zhou et al., NeurIPS 2022), inference only, with the official state-dict keys.

Official code: sczhou/CodeFormer ``basicsr/archs/codeformer_arch.py`` (+ ``vqgan_arch.py``). The network is a
VQGAN (see ``facerest_cli.models.vqgan``) whose code indices are predicted by a transformer from the encoder's
latent instead of by nearest-neighbour search; controllable feature transforms (``fuse_convs_dict``) then mix
encoder skip features into the decoder with fidelity weight ``w``.

Training-only constructor arguments of the official class (``fix_modules``, ``vqgan_path``) do not exist here.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from facerest_cli.models.arch import ArchSpec, face
from facerest_cli.models.vqgan import Codebook, ResBlock, VQEncoder, VQGenerator

# The VQGAN CodeFormer is built on: VQAutoEncoder(512, 64, [1, 2, 2, 4, 4, 8], 'nearest', 2, [16], codebook_size).
_IMG_SIZE = 512
_NF = 64
_CH_MULT = (1, 2, 2, 4, 4, 8)
_RES_BLOCKS = 2
_ATTN_RESOLUTIONS = (16,)
_EMB_DIM = 256

# Per skip resolution: channels, the encoder block whose output is the skip (after the second ResBlock of a
# level; for 16 before its attention), and the decoder block the fusion follows (after the first ResBlock).
_SKIP_CHANNELS = {"16": 512, "32": 256, "64": 256, "128": 128, "256": 128, "512": 64}
_ENCODER_TAP = {"512": 2, "256": 5, "128": 8, "64": 11, "32": 14, "16": 18}
_GENERATOR_FUSE = {"16": 6, "32": 9, "64": 12, "128": 15, "256": 18, "512": 21}


def adaptive_instance_norm(content: torch.Tensor, style: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Give ``content`` the per-channel mean and std of ``style``; both ``(B, C, H, W)``.

    Statistics as the official ``calc_mean_std``: unbiased variance over H*W, ``eps`` added to the variance.
    Computed in float32 (and returned in ``style``'s dtype) because a half-precision variance can overflow.
    """
    c = content.float().flatten(2)
    s = style.float().flatten(2)
    c_mean, c_std = c.mean(dim=2, keepdim=True), (c.var(dim=2, keepdim=True) + eps).sqrt()
    s_mean, s_std = s.mean(dim=2, keepdim=True), (s.var(dim=2, keepdim=True) + eps).sqrt()
    out = (c - c_mean) / c_std * s_std + s_mean
    return out.reshape(content.shape).to(style.dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameters, batch-first, run by SDPA.

    Parameters (and state-dict keys) are those of ``nn.MultiheadAttention(embed_dim, num_heads)``:
    ``in_proj_weight`` ``(3E, E)`` stacking the q, k, v projections, ``in_proj_bias`` ``(3E,)`` and
    ``out_proj``. Queries and keys share one input and values take another, as in DETR-style layers that add
    the position embedding to q and k only.
    """

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        # nn.MultiheadAttention's initialisation; only matters for an untrained module
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, qk_in: torch.Tensor, v_in: torch.Tensor) -> torch.Tensor:
        """``qk_in``, ``v_in``: ``(B, L, E)`` -> ``(B, L, E)``."""
        b, n, e = v_in.shape
        # q and k come from the same input: one matmul for both
        q, k = F.linear(qk_in, self.in_proj_weight[: 2 * e], self.in_proj_bias[: 2 * e]).chunk(2, dim=-1)
        v = F.linear(v_in, self.in_proj_weight[2 * e :], self.in_proj_bias[2 * e :])

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, L, E) -> (B, heads, L, E / heads)
            return t.reshape(b, n, self.num_heads, e // self.num_heads).transpose(1, 2)

        att = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        return self.out_proj(att.transpose(1, 2).reshape(b, n, e))


class TransformerSALayer(nn.Module):
    """Pre-norm transformer layer: x + SA(LN(x) + pos for q/k, LN(x) for v), then x + MLP(LN(x)) with exact GELU."""

    def __init__(self, embed_dim: int, num_heads: int, dim_mlp: int) -> None:
        super().__init__()
        self.self_attn = SelfAttention(embed_dim, num_heads)
        self.linear1 = nn.Linear(embed_dim, dim_mlp)
        self.linear2 = nn.Linear(dim_mlp, embed_dim)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, L, E)``; ``pos``: ``(L, E)``, broadcast over the batch."""
        h = self.norm1(x)
        x = x + self.self_attn(h + pos, h)
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


class FuseSFTBlock(nn.Module):
    """Controllable feature transform: ``dec + w * (dec * scale + shift)``, scale/shift predicted from [enc, dec]."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.encode_enc = ResBlock(2 * in_ch, out_ch)
        self.scale = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),  # acts on the conv's own output, never on a block input
            nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1),
        )
        self.shift = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1),
        )

    def forward(self, enc_feat: torch.Tensor, dec_feat: torch.Tensor, w: float) -> torch.Tensor:
        h = self.encode_enc(torch.cat([enc_feat, dec_feat], dim=1))
        return dec_feat + w * (dec_feat * self.scale(h) + self.shift(h))


class CodeFormer(nn.Module):
    """CodeFormer face restorer.

    ``forward(x, w=0.5, adain=True)``: ``x`` is ``(B, 3, 512, 512)`` float, RGB in [-1, 1] (an FFHQ-aligned
    face). Returns ``(out, logits, lq_feat)``: the restored face ``(B, 3, 512, 512)`` RGB, roughly [-1, 1] and
    not clamped; the code logits ``(B, 256, codebook_size)`` (16x16 latent positions, row-major); the encoder
    latent ``(B, 256, 16, 16)``. ``w`` in [0, 1] is the fidelity weight: 0 uses the codebook prediction alone
    (the fusion layers are skipped), 1 mixes the most of the input's encoder features back in.
    """

    def __init__(
        self,
        dim_embd: int = 512,
        n_head: int = 8,
        n_layers: int = 9,
        codebook_size: int = 1024,
        latent_size: int = 256,
        connect_list: Sequence[str] = ("32", "64", "128", "256"),
    ) -> None:
        super().__init__()
        unknown = [s for s in connect_list if s not in _SKIP_CHANNELS]
        if unknown:
            raise ValueError(f"connect_list entries {unknown} not among {sorted(_SKIP_CHANNELS, key=int)}")
        self.img_size = _IMG_SIZE
        self.latent_hw = _IMG_SIZE // 2 ** (len(_CH_MULT) - 1)
        if latent_size != self.latent_hw**2:
            raise ValueError(f"latent_size {latent_size} != {self.latent_hw}**2 positions of a {_IMG_SIZE}px input")
        self.connect_list = tuple(str(s) for s in connect_list)

        self.encoder = VQEncoder(3, _NF, _EMB_DIM, _CH_MULT, _RES_BLOCKS, _IMG_SIZE, _ATTN_RESOLUTIONS)
        self.quantize = Codebook(codebook_size, _EMB_DIM)
        self.generator = VQGenerator(_NF, _EMB_DIM, _CH_MULT, _RES_BLOCKS, _IMG_SIZE, _ATTN_RESOLUTIONS)

        self.position_emb = nn.Parameter(torch.zeros(latent_size, dim_embd))
        self.feat_emb = nn.Linear(_EMB_DIM, dim_embd)
        self.ft_layers = nn.Sequential(
            *(TransformerSALayer(dim_embd, n_head, dim_mlp=2 * dim_embd) for _ in range(n_layers))
        )
        self.idx_pred_layer = nn.Sequential(nn.LayerNorm(dim_embd), nn.Linear(dim_embd, codebook_size, bias=False))
        self.fuse_convs_dict = nn.ModuleDict(
            {s: FuseSFTBlock(_SKIP_CHANNELS[s], _SKIP_CHANNELS[s]) for s in self.connect_list}
        )
        # generator block index -> (fusion key, encoder block index of its skip feature)
        self._fuse_after = {_GENERATOR_FUSE[s]: (s, _ENCODER_TAP[s]) for s in self.connect_list}

    def forward(
        self, x: torch.Tensor, w: float = 0.5, adain: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            raise ValueError(f"expected x of shape (B, 3, {self.img_size}, {self.img_size}), got {tuple(x.shape)}")
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"fidelity weight w must be in [0, 1], got {w!r}")
        fuse = w > 0

        # encoder; skip features are kept only when they will be fused
        taps = [enc_idx for _, enc_idx in self._fuse_after.values()] if fuse else []
        lq_feat, skips = self.encoder(x, taps)

        # transformer over the 16x16 latent positions, batch-first (B, HW, C)
        tokens = self.feat_emb(lq_feat.flatten(2).transpose(1, 2))
        for layer in self.ft_layers:
            tokens = layer(tokens, self.position_emb)
        logits = self.idx_pred_layer(tokens)  # (B, HW, codebook_size)

        # code choice as the official: top-1 of the float32 softmax (its ties resolve like argmax of it)
        top_idx = torch.topk(F.softmax(logits.float(), dim=2), 1, dim=2).indices.squeeze(2)
        quant_feat = self.quantize.lookup(top_idx, self.latent_hw, self.latent_hw)
        if adain:
            quant_feat = adaptive_instance_norm(quant_feat, lq_feat)
        else:
            quant_feat = quant_feat.to(lq_feat.dtype)

        h = quant_feat
        for i, block in enumerate(self.generator.blocks):
            h = block(h)
            if fuse and i in self._fuse_after:
                key, enc_idx = self._fuse_after[i]
                h = self.fuse_convs_dict[key](skips[enc_idx], h, w)
        return h, logits, lq_feat


# Official constructor arguments of the released codeformer.pth (inference_codeformer.py).
_OFFICIAL: dict[str, Any] = {
    "dim_embd": 512,
    "codebook_size": 1024,
    "n_head": 8,
    "n_layers": 9,
    "connect_list": ("32", "64", "128", "256"),
}


def codeformer(**overrides: Any) -> CodeFormer:
    """CodeFormer with the official constructor arguments (``codeformer.pth``, ``params_ema``)."""
    return CodeFormer(**{**_OFFICIAL, **overrides})


def _restore(net: CodeFormer, x: torch.Tensor, *, fidelity: float = 0.5) -> torch.Tensor:
    # inference_codeformer.py: ``net(cropped_face_t, w=w, adain=True)[0]``.
    return net(x, w=fidelity, adain=True)[0]


CODEFORMER = ArchSpec(build=codeformer, call=_restore, options=("fidelity",), inputs=(face(512),),
                      fp32_scopes=("encoder", "feat_emb", "ft_layers", "idx_pred_layer"))

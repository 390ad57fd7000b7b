"""ParseNet face parser (facexlib ``parsing_parsenet.pth``, origin PSFRGAN / GPEN ``ParseNet-latest``).

Architecture only, state-dict compatible with facexlib ``facexlib/parsing/parsenet.py`` (commit 260620a): a
residual encoder -> body -> decoder that predicts a parsing map and, as a side output, a restored image.
Every 3x3 conv reflection-pads its input first; BatchNorm convs carry no bias.

Class order (``CLASS_NAMES``): ParseNet was trained on the CelebAMask-HQ label maps in the dataset's own order
(``skin, nose, eye_g, l_eye, r_eye, l_brow, r_brow, l_ear, r_ear, mouth, u_lip, l_lip, hair, hat, ear_r, neck_l,
neck, cloth`` as ``index + 1``, 0 background), as listed in GPEN ``face_parse/face_parsing.py``, which ships the
same ParseNet. This differs from BiSeNet's order (``bisenet.CLASS_NAMES``): one index table cannot serve both.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

import torch.nn.functional as F
from torch import Tensor, nn

from facerest_cli.models.arch import ArchSpec, face

CLASS_NAMES: tuple[str, ...] = (
    "background",  # 0
    "skin",  # 1
    "nose",  # 2
    "eye_g",  # 3  eye glasses
    "l_eye",  # 4
    "r_eye",  # 5
    "l_brow",  # 6
    "r_brow",  # 7
    "l_ear",  # 8
    "r_ear",  # 9
    "mouth",  # 10 inner mouth / teeth
    "u_lip",  # 11
    "l_lip",  # 12
    "hair",  # 13
    "hat",  # 14
    "ear_r",  # 15 earring
    "neck_l",  # 16 necklace
    "neck",  # 17
    "cloth",  # 18
)
"""The 19 labels ParseNet outputs, by channel index (argmax over dim 1 of the logits)."""

# Same parts as bisenet.FACE_CLASSES (inner face and ears; no hair, hat, neck, jewellery, clothes), in this order.
# facexlib's MASK_COLORMAP, read in this order, keeps hair (13) and the earring (15) as well.
_FACE_PARTS = (
    "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth", "u_lip", "l_lip"
)
FACE_CLASSES: tuple[int, ...] = tuple(CLASS_NAMES.index(name) for name in _FACE_PARTS)
"""Indices into ``CLASS_NAMES`` that count as face for a restoration blend mask: (1, ..., 12)."""


class _NormSlot(nn.Module):
    """Holds the norm as ``.norm`` so that keys read ``<conv>.norm.norm.*`` as in the official file."""

    def __init__(self, channels: int, norm_type: str) -> None:
        super().__init__()
        kind = norm_type.lower()
        if kind == "bn":
            self.norm: nn.Module = nn.BatchNorm2d(channels)
        elif kind == "in":
            self.norm = nn.InstanceNorm2d(channels, affine=False)
        elif kind == "gn":
            self.norm = nn.GroupNorm(32, channels)
        elif kind == "none":
            self.norm = nn.Identity()
        else:
            raise ValueError(f"ParseNet norm_type {norm_type!r} not supported; expected bn, in, gn or none")

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x)


class _ActSlot(nn.Module):
    """Holds the activation as ``.func`` (keys ``<conv>.relu.func.*`` for PReLU, as in the official file)."""

    def __init__(self, channels: int, relu_type: str) -> None:
        super().__init__()
        kind = relu_type.lower()
        if kind == "relu":
            self.func: nn.Module = nn.ReLU(inplace=True)
        elif kind == "leakyrelu":
            self.func = nn.LeakyReLU(0.2, inplace=True)  # PSFRGAN's slope, not torch's 0.01 default
        elif kind == "prelu":
            self.func = nn.PReLU(channels)
        elif kind == "selu":
            self.func = nn.SELU(inplace=True)
        elif kind == "none":
            self.func = nn.Identity()
        else:
            raise ValueError(
                f"ParseNet relu_type {relu_type!r} not supported; expected relu, leakyrelu, prelu, selu or none"
            )

    def forward(self, x: Tensor) -> Tensor:
        return self.func(x)


class ConvLayer(nn.Module):
    """[nearest x2 up] -> reflection pad -> conv (stride 2 for ``scale='down'``) -> norm -> activation.

    Any ``scale`` other than ``'up'`` / ``'down'`` means same resolution (the official encoder passes ``1``).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        scale: str | int = "none",
        norm_type: str = "none",
        relu_type: str = "none",
    ) -> None:
        super().__init__()
        self.upsample = scale == "up"
        # A conv with padding_mode="reflect" pads exactly as the official ReflectionPad2d(ceil((k-1)/2)) + pad-0 conv.
        self.conv2d = nn.Conv2d(
            in_ch,
            out_ch,
            kernel_size,
            stride=2 if scale == "down" else 1,
            padding=kernel_size // 2,
            padding_mode="reflect",
            bias=norm_type.lower() != "bn",
        )
        self.relu = _ActSlot(out_ch, relu_type)
        self.norm = _NormSlot(out_ch, norm_type)

    def forward(self, x: Tensor) -> Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.relu(self.norm(self.conv2d(x)))


class ResidualBlock(nn.Module):
    """Two ConvLayers (the first resamples on ``'up'``, the second on ``'down'``) plus a shortcut.

    The shortcut is the identity when shape is kept, else a plain 3x3 ConvLayer with bias (no norm, no activation).
    """

    def __init__(self, c_in: int, c_out: int, relu_type: str, norm_type: str, scale: str = "none") -> None:
        super().__init__()
        self.shortcut_func: nn.Module = (
            nn.Identity() if scale == "none" and c_in == c_out else ConvLayer(c_in, c_out, 3, scale)
        )
        first, second = {"down": ("none", "down"), "up": ("up", "none"), "none": ("none", "none")}[scale]
        self.conv1 = ConvLayer(c_in, c_out, 3, first, norm_type=norm_type, relu_type=relu_type)
        self.conv2 = ConvLayer(c_out, c_out, 3, second, norm_type=norm_type, relu_type="none")

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut_func(x) + self.conv2(self.conv1(x))


class ParseNet(nn.Module):
    """ParseNet (PSFRGAN), facexlib flavour.

    Input ``x``: ``(B, 3, H, W)`` float, RGB in ``[-1, 1]`` (``x / 255 * 2 - 1``); H and W multiples of
    ``2 ** down_steps`` (16 for the 512 release; trained at 512x512 on FFHQ-aligned crops). ``forward(x)``
    returns ``(logits, out_img)``: ``(B, parsing_ch, H', W')`` unnormalised parsing logits whose argmax over dim 1
    indexes ``CLASS_NAMES``, and ``(B, 3, H', W')`` an RGB image in about ``[-1, 1]``; ``H' = H`` when
    ``in_size == out_size``.
    """

    def __init__(
        self,
        in_size: int = 128,
        out_size: int = 128,
        min_feat_size: int = 32,
        base_ch: int = 64,
        parsing_ch: int = 19,
        res_depth: int = 10,
        relu_type: str = "LeakyReLU",
        norm_type: str = "bn",
        ch_range: Sequence[int] = (32, 256),
    ) -> None:
        super().__init__()
        min_ch, max_ch = ch_range

        def clip(c: int) -> int:
            return max(min_ch, min(c, max_ch))

        min_feat_size = min(in_size, min_feat_size)
        # floor(log2(.)), as the official int(np.log2(in_size // min_feat_size))
        down_steps = (in_size // min_feat_size).bit_length() - 1
        up_steps = (out_size // min_feat_size).bit_length() - 1
        act = {"norm_type": norm_type, "relu_type": relu_type}

        encoder: list[nn.Module] = [ConvLayer(3, base_ch, 3, 1)]
        head_ch = base_ch
        for _ in range(down_steps):
            encoder.append(ResidualBlock(clip(head_ch), clip(head_ch * 2), scale="down", **act))
            head_ch *= 2
        body = [ResidualBlock(clip(head_ch), clip(head_ch), **act) for _ in range(res_depth)]
        decoder: list[nn.Module] = []
        for _ in range(up_steps):
            decoder.append(ResidualBlock(clip(head_ch), clip(head_ch // 2), scale="up", **act))
            head_ch //= 2

        self.encoder = nn.Sequential(*encoder)
        self.body = nn.Sequential(*body)
        self.decoder = nn.Sequential(*decoder)
        self.out_img_conv = ConvLayer(clip(head_ch), 3)
        self.out_mask_conv = ConvLayer(clip(head_ch), parsing_ch)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.encoder(x)
        x = self.decoder(feat + self.body(feat))
        return self.out_mask_conv(x), self.out_img_conv(x)

    def parse(self, x: Tensor) -> Tensor:
        """``forward(x)[0]`` without the image head."""
        feat = self.encoder(x)
        return self.out_mask_conv(self.decoder(feat + self.body(feat)))


def parsenet(**overrides: object) -> ParseNet:
    """facexlib ``parsing_parsenet.pth`` architecture: ``ParseNet(in_size=512, out_size=512, parsing_ch=19)``.

    The other arguments keep the official defaults (LeakyReLU 0.2, BatchNorm, base 64 ch, 10 body blocks).
    """
    kwargs: dict[str, object] = {"in_size": 512, "out_size": 512, "parsing_ch": 19, **overrides}
    return ParseNet(**kwargs)  # type: ignore[arg-type]


def _parse(net: ParseNet, x: Tensor) -> Tensor:
    return net.parse(x)


PARSENET = ArchSpec(build=parsenet, call=_parse, meta=MappingProxyType({"face_classes": FACE_CLASSES}),
                   inputs=(face(512),), bf16=True)

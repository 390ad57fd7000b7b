"""BiSeNet face parser (facexlib ``parsing_bisenet.pth``, origin zllrunning/face-parsing.PyTorch).

Architecture only, state-dict compatible with facexlib ``facexlib/parsing/bisenet.py`` + ``resnet.py`` (commit
260620a): a ResNet-18 context path (its own, not torchvision's: key names ``cp.resnet.layerN.M.*``), two attention
refinement modules, a feature fusion module and three output heads (the main one plus two auxiliary heads that
were only needed for deep supervision during training).

Class order (``CLASS_NAMES``): the label maps of zllrunning/face-parsing.PyTorch ``prepropess_data.py``, whose
``atts`` list (``skin, l_brow, r_brow, l_eye, r_eye, eye_g, l_ear, r_ear, ear_r, nose, mouth, u_lip, l_lip, neck,
neck_l, cloth, hair, hat``) is written as ``index + 1`` with 0 for background; facexlib reuses those weights
unchanged. This is *not* the CelebAMask-HQ release order, which ParseNet follows (see ``parsenet.CLASS_NAMES``).
"""

from __future__ import annotations

from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facerest_cli.models.arch import ArchSpec, face

CLASS_NAMES: tuple[str, ...] = (
    "background",  # 0
    "skin",  # 1
    "l_brow",  # 2
    "r_brow",  # 3
    "l_eye",  # 4
    "r_eye",  # 5
    "eye_g",  # 6  eye glasses
    "l_ear",  # 7
    "r_ear",  # 8
    "ear_r",  # 9  earring
    "nose",  # 10
    "mouth",  # 11 inner mouth / teeth
    "u_lip",  # 12
    "l_lip",  # 13
    "neck",  # 14
    "neck_l",  # 15 necklace
    "cloth",  # 16
    "hair",  # 17
    "hat",  # 18
)
"""The 19 labels BiSeNet outputs, by channel index (argmax over dim 1 of the logits)."""

# What a restorer actually re-synthesises: the inner face and the ears around it. Hair, hat, neck, jewellery and
# clothes come out of face restorers blurred or invented, so the blend mask keeps the original pixels there.
# (facexlib's own MASK_COLORMAP differs: it keeps the earring and necklace channels of this order.)
_FACE_PARTS = (
    "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "nose", "mouth", "u_lip", "l_lip"
)
FACE_CLASSES: tuple[int, ...] = tuple(CLASS_NAMES.index(name) for name in _FACE_PARTS)
"""Indices into ``CLASS_NAMES`` that count as face for a restoration blend mask: (1, ..., 8, 10, 11, 12, 13)."""


def _global_mean(x: Tensor) -> Tensor:
    # Same value as the official F.avg_pool2d(x, x.size()[2:]) without baking the spatial size into the graph.
    return x.mean(dim=(2, 3), keepdim=True)


class _BasicBlock(nn.Module):
    """ResNet basic block; the 1x1 projection shortcut exists only when the shape changes (facexlib rule)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Sequential | None = None
        if in_ch != out_ch or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        res = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + res)


class ResNet18(nn.Module):
    """facexlib's parsing ResNet-18 trunk: returns the stride-8, -16 and -32 feature maps (128, 256, 512 ch)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._stage(64, 64, 1)
        self.layer2 = self._stage(64, 128, 2)
        self.layer3 = self._stage(128, 256, 2)
        self.layer4 = self._stage(256, 512, 2)

    @staticmethod
    def _stage(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
        return nn.Sequential(_BasicBlock(in_ch, out_ch, stride), _BasicBlock(out_ch, out_ch, 1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        feat8 = self.layer2(self.layer1(x))
        feat16 = self.layer3(feat8)
        feat32 = self.layer4(feat16)
        return feat8, feat16, feat32


class ConvBNReLU(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, ks: int = 3, stride: int = 1, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, ks, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class BiSeNetOutput(nn.Module):
    """3x3 ConvBNReLU then a bias-free 1x1 classifier; logits at the input's resolution (no upsampling here)."""

    def __init__(self, in_ch: int, mid_ch: int, num_class: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_ch, mid_ch, 3, 1, 1)
        self.conv_out = nn.Conv2d(mid_ch, num_class, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(self.conv(x))


class AttentionRefinementModule(nn.Module):
    """Channel attention: features scaled by sigmoid(BN(1x1 conv(global mean)))."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch, 3, 1, 1)
        self.conv_atten = nn.Conv2d(out_ch, out_ch, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv(x)
        return feat * torch.sigmoid(self.bn_atten(self.conv_atten(_global_mean(feat))))


class ContextPath(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128, 3, 1, 1)
        self.conv_head16 = ConvBNReLU(128, 128, 3, 1, 1)
        self.conv_avg = ConvBNReLU(512, 128, 1, 1, 0)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (stride-8 trunk features, stride-8 context, stride-16 context)."""
        feat8, feat16, feat32 = self.resnet(x)
        # The official code nearest-upsamples the 1x1 global context to feat32's size before adding it;
        # broadcasting adds the same values without materialising the copy.
        feat32_sum = self.arm32(feat32) + self.conv_avg(_global_mean(feat32))
        feat32_up = self.conv_head32(F.interpolate(feat32_sum, size=feat16.shape[-2:], mode="nearest"))
        feat16_sum = self.arm16(feat16) + feat32_up
        feat16_up = self.conv_head16(F.interpolate(feat16_sum, size=feat8.shape[-2:], mode="nearest"))
        return feat8, feat16_up, feat32_up


class FeatureFusionModule(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(in_ch, out_ch, 1, 1, 0)
        self.conv1 = nn.Conv2d(out_ch, out_ch // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_ch // 4, out_ch, 1, bias=False)

    def forward(self, fsp: Tensor, fcp: Tensor) -> Tensor:
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(_global_mean(feat)))))
        return torch.addcmul(feat, feat, atten)  # feat * atten + feat, in one kernel


class BiSeNet(nn.Module):
    """BiSeNet face parser, facexlib flavour (the spatial path replaced by the trunk's stride-8 features).

    Input ``x``: ``(B, 3, H, W)`` float, RGB, ``(x / 255 - mean) / std`` with the ImageNet mean
    ``(0.485, 0.456, 0.406)`` and std ``(0.229, 0.224, 0.225)``; H and W multiples of 32 (trained at 512x512 on
    FFHQ-aligned crops). ``forward(x)`` returns ``(out, out16, out32)``, each ``(B, num_class, H, W)`` unnormalised
    logits bilinearly upsampled (``align_corners=True``) to the input size; inference uses ``out`` only, whose
    argmax over dim 1 indexes ``CLASS_NAMES``. ``out16`` / ``out32`` are the auxiliary training heads.
    """

    def __init__(self, num_class: int = 19) -> None:
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, num_class)
        self.conv_out16 = BiSeNetOutput(128, 64, num_class)
        self.conv_out32 = BiSeNetOutput(128, 64, num_class)

    @staticmethod
    def _upsample(logits: Tensor, size: tuple[int, int]) -> Tensor:
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        size = (x.shape[-2], x.shape[-1])
        feat_res8, feat_cp8, feat_cp16 = self.cp(x)
        out = self.conv_out(self.ffm(feat_res8, feat_cp8))
        out16 = self.conv_out16(feat_cp8)
        out32 = self.conv_out32(feat_cp16)
        return self._upsample(out, size), self._upsample(out16, size), self._upsample(out32, size)

    def parse(self, x: Tensor) -> Tensor:
        """``forward(x)[0]`` without the two auxiliary heads: same values, less compute and memory per face."""
        feat_res8, feat_cp8, _ = self.cp(x)
        return self._upsample(self.conv_out(self.ffm(feat_res8, feat_cp8)), (x.shape[-2], x.shape[-1]))


def bisenet(**overrides: int) -> BiSeNet:
    """facexlib ``parsing_bisenet.pth`` architecture: ``BiSeNet(num_class=19)``; ``overrides`` replace arguments."""
    kwargs = {"num_class": 19, **overrides}
    return BiSeNet(**kwargs)


def _parse(net: BiSeNet, x: Tensor) -> Tensor:
    return net.parse(x)


BISENET = ArchSpec(build=bisenet, call=_parse, meta=MappingProxyType({"face_classes": FACE_CLASSES}),
                  inputs=(face(512),), bf16=True)

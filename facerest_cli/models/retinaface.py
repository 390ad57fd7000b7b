"""RetinaFace (MobileNet-0.25 and ResNet-50 bodies), as in facexlib / biubug6 Pytorch_Retinaface, plus its anchors.

Module names follow the official ones (``body``, ``fpn``, ``ssh1..3``, ``ClassHead``, ``BboxHead``,
``LandmarkHead``; SSH's ``conv7x7_3`` really has a lower-case x), so released ``*_Final.pth`` files load strictly.

Two trained MobileNet-0.25 files share these keys but are different functions: facexlib's / Pytorch_Retinaface's
``mobilenet0.25_Final.pth`` (LeakyReLU 0.1, anchors 16..512; ``variant='retinaface'``) and the one released with
biubug6's Face-Detector-1MB-with-landmark (plain ReLU everywhere, anchors 10..256; ``variant='1mb'``). Each net
carries its anchor layout (``net.min_sizes``, ``net.steps``, ``net.variances``) for ``prior_boxes`` / ``decode_*``.

The net has no padding and no resizing of its own: every stride-2 layer maps a side ``s`` to ``ceil(s / 2)``, so
for any ``H, W`` the level with stride ``t`` has ``ceil(H / t) x ceil(W / t)`` cells, which is exactly the grid
``prior_boxes`` lays out. Output row ``p`` of ``loc / conf / landms`` belongs to prior ``p``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from facerest_cli.models.arch import ArchSpec, TensorSpec
from facerest_cli.models.resnet import resnet50

# facexlib's cfg_mnet / cfg_re50: the anchor layout both facexlib nets were trained with
MIN_SIZES: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))
# Face-Detector-1MB-with-landmark's cfg_mnet: smaller anchors (same strides and variances)
MIN_SIZES_1MB: tuple[tuple[int, ...], ...] = ((10, 20), (32, 64), (128, 256))
STEPS: tuple[int, ...] = (8, 16, 32)
VARIANCES: tuple[float, float] = (0.1, 0.2)
MEAN_BGR: tuple[float, float, float] = (104.0, 117.0, 123.0)


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, slope: float | None = None) -> nn.Sequential:
    """Conv (no bias) + BN [+ LeakyReLU(slope) unless slope is None]; indices 0 / 1 are the official key names."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if slope is not None:
        # slope 0 is the official "leaky=0", i.e. a plain ReLU
        layers.append(nn.LeakyReLU(negative_slope=slope, inplace=True))
    return nn.Sequential(*layers)


def _conv_dw(in_ch: int, out_ch: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    """Depthwise 3x3 + pointwise 1x1, each with BN and LeakyReLU (keys 0,1 / 3,4)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, in_ch, 3, stride, 1, groups=in_ch, bias=False),
        nn.BatchNorm2d(in_ch),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
        nn.Conv2d(in_ch, out_ch, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


class MobileNet025(nn.Module):
    """RetinaFace's MobileNetV1 x0.25 body: ``stage1..3`` at strides 8 / 16 / 32 with 64 / 128 / 256 channels.

    The official class also has ``avg`` and ``fc``; ``IntermediateLayerGetter`` drops them (they come after the
    last returned stage), so they are absent from the released files and from here.
    """

    def __init__(self, leaky: float = 0.1) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            _conv_bn(3, 8, 3, stride=2, slope=leaky),
            _conv_dw(8, 16, 1, leaky),
            _conv_dw(16, 32, 2, leaky),
            _conv_dw(32, 32, 1, leaky),
            _conv_dw(32, 64, 2, leaky),
            _conv_dw(64, 64, 1, leaky),
        )
        self.stage2 = nn.Sequential(_conv_dw(64, 128, 2, leaky), *(_conv_dw(128, 128, 1, leaky) for _ in range(5)))
        self.stage3 = nn.Sequential(_conv_dw(128, 256, 2, leaky), _conv_dw(256, 256, 1, leaky))

    def forward_features(self, x: torch.Tensor, layers: Sequence[int] = (1, 2, 3)) -> list[torch.Tensor]:
        """Outputs of ``stage{k}`` for each k in ``layers`` (ascending, 1..3)."""
        feats: list[torch.Tensor] = []
        for k, stage in enumerate((self.stage1, self.stage2, self.stage3), start=1):
            x = stage(x)
            if k in layers:
                feats.append(x)
            if k == layers[-1]:
                break
        return feats


class FPN(nn.Module):
    """Three lateral 1x1 convs, top-down nearest upsampling to the finer map's exact size, two 3x3 merges."""

    def __init__(self, in_channels: Sequence[int], out_ch: int, leaky: float | None = None) -> None:
        super().__init__()
        if leaky is None:  # the official rule: leaky only in the narrow (MobileNet) necks
            leaky = 0.1 if out_ch <= 64 else 0.0
        self.output1 = _conv_bn(in_channels[0], out_ch, 1, slope=leaky)
        self.output2 = _conv_bn(in_channels[1], out_ch, 1, slope=leaky)
        self.output3 = _conv_bn(in_channels[2], out_ch, 1, slope=leaky)
        self.merge1 = _conv_bn(out_ch, out_ch, 3, slope=leaky)
        self.merge2 = _conv_bn(out_ch, out_ch, 3, slope=leaky)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        out1 = self.output1(feats[0])
        out2 = self.output2(feats[1])
        out3 = self.output3(feats[2])
        # upsample to the exact size (not x2): with odd sides the finer map is 2n-1, not 2n
        out2 = self.merge2(out2 + F.interpolate(out3, size=out2.shape[-2:], mode="nearest"))
        out1 = self.merge1(out1 + F.interpolate(out2, size=out1.shape[-2:], mode="nearest"))
        return [out1, out2, out3]


class SSH(nn.Module):
    """Single-stage headless context module: 3x3 | 5x5 (two 3x3) | 7x7 (three 3x3) branches, concatenated."""

    def __init__(self, in_ch: int, out_ch: int, leaky: float | None = None) -> None:
        super().__init__()
        if out_ch % 4:
            raise ValueError(f"SSH out_ch must be divisible by 4, got {out_ch}")
        if leaky is None:
            leaky = 0.1 if out_ch <= 64 else 0.0
        self.conv3X3 = _conv_bn(in_ch, out_ch // 2, 3)
        self.conv5X5_1 = _conv_bn(in_ch, out_ch // 4, 3, slope=leaky)
        self.conv5X5_2 = _conv_bn(out_ch // 4, out_ch // 4, 3)
        self.conv7X7_2 = _conv_bn(out_ch // 4, out_ch // 4, 3, slope=leaky)
        self.conv7x7_3 = _conv_bn(out_ch // 4, out_ch // 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5_1 = self.conv5X5_1(x)
        out = torch.cat([self.conv3X3(x), self.conv5X5_2(branch5_1), self.conv7x7_3(self.conv7X7_2(branch5_1))], dim=1)
        return F.relu(out)


class _Head(nn.Module):
    """1x1 conv to ``anchors * width`` channels, laid out as ``(B, H*W*anchors, width)`` in (row, col, anchor) order."""

    def __init__(self, in_ch: int, anchors: int, width: int) -> None:
        super().__init__()
        self.width = width
        self.conv1x1 = nn.Conv2d(in_ch, anchors * width, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.width)


_CONFIGS: dict[str, dict] = {
    # network_name -> body stages returned and the FPN widths (facexlib cfg in_channel * (2, 4, 8), out_channel)
    "mobile0.25": {"layers": (1, 2, 3), "in_channels": (64, 128, 256), "out_ch": 64},
    "resnet50": {"layers": (2, 3, 4), "in_channels": (512, 1024, 2048), "out_ch": 256},
}
# variant -> activation slope everywhere (None: the official per-module slopes) and anchor sizes
_VARIANTS: dict[str, dict] = {
    "retinaface": {"leaky": None, "min_sizes": MIN_SIZES},
    "1mb": {"leaky": 0.0, "min_sizes": MIN_SIZES_1MB},
}


class RetinaFace(nn.Module):
    """RetinaFace detector network (anchors and decoding are separate: ``prior_boxes``, ``decode_*``).

    Input: ``(B, 3, H, W)`` float, **BGR**, 0-255 scale minus ``MEAN_BGR`` (104, 117, 123), any H and W
    (the official detector feeds the original image size; nothing is padded).
    Output ``(loc, conf, landms)``: ``(B, P, 4)`` box offsets, ``(B, P, 2)`` [background, face] scores --
    softmax-ed when ``phase='test'``, raw logits for ``'train'`` -- and ``(B, P, 10)`` landmark offsets,
    ``P = 2 * sum_t ceil(H/t) * ceil(W/t)`` over strides t = 8, 16, 32, in
    ``prior_boxes(H, W, net.min_sizes, net.steps)`` order.

    ``half=True`` stores the weights in float16, as the official flag does; prefer autocast at run time.
    ``variant`` (not an official argument): ``'retinaface'`` (facexlib / Pytorch_Retinaface) or ``'1mb'``
    (Face-Detector-1MB-with-landmark's MobileNet-0.25: same keys, plain ReLU, anchors ``MIN_SIZES_1MB``).
    """

    def __init__(self, network_name: str = "resnet50", half: bool = False, phase: str = "test", variant: str = "retinaface") -> None:
        super().__init__()
        if network_name not in _CONFIGS:
            raise ValueError(f"network_name must be one of {sorted(_CONFIGS)}, got {network_name!r}")
        if phase not in ("test", "train"):
            raise ValueError(f"phase must be 'test' or 'train', got {phase!r}")
        if variant not in _VARIANTS or (variant == "1mb" and network_name != "mobile0.25"):
            raise ValueError(f"variant must be 'retinaface' (or '1mb' with mobile0.25), got {variant!r} with {network_name!r}")
        cfg, var = _CONFIGS[network_name], _VARIANTS[variant]
        self.network_name = network_name
        self.variant = variant
        self.phase = phase
        self.min_sizes: tuple[tuple[int, ...], ...] = var["min_sizes"]
        self.steps: tuple[int, ...] = STEPS
        self.variances: tuple[float, float] = VARIANCES
        self.return_layers: tuple[int, ...] = cfg["layers"]
        leaky = var["leaky"]
        self.body: nn.Module = (
            MobileNet025(0.1 if leaky is None else leaky) if network_name == "mobile0.25" else resnet50(num_classes=None)
        )
        out_ch = cfg["out_ch"]
        self.fpn = FPN(cfg["in_channels"], out_ch, leaky)
        self.ssh1 = SSH(out_ch, out_ch, leaky)
        self.ssh2 = SSH(out_ch, out_ch, leaky)
        self.ssh3 = SSH(out_ch, out_ch, leaky)
        anchors = len(self.min_sizes[0])
        self.ClassHead = nn.ModuleList(_Head(out_ch, anchors, 2) for _ in range(3))
        self.BboxHead = nn.ModuleList(_Head(out_ch, anchors, 4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(_Head(out_ch, anchors, 10) for _ in range(3))
        if half:
            self.half()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"RetinaFace expects (B, 3, H, W) BGR minus (104, 117, 123), got {tuple(x.shape)}")
        fpn = self.fpn(self.body.forward_features(x, self.return_layers))
        feats = (self.ssh1(fpn[0]), self.ssh2(fpn[1]), self.ssh3(fpn[2]))
        loc = torch.cat([head(f) for head, f in zip(self.BboxHead, feats)], dim=1)
        conf = torch.cat([head(f) for head, f in zip(self.ClassHead, feats)], dim=1)
        landms = torch.cat([head(f) for head, f in zip(self.LandmarkHead, feats)], dim=1)
        if self.phase == "test":
            conf = F.softmax(conf, dim=-1)
        return loc, conf, landms


def retinaface_mnet(**overrides) -> RetinaFace:
    """RetinaFace MobileNet-0.25 with facexlib's constructor arguments (``network_name='mobile0.25'``)."""
    return RetinaFace(**{"network_name": "mobile0.25", "half": False, **overrides})


def retinaface_mnet_1mb(**overrides) -> RetinaFace:
    """MobileNet-0.25 of biubug6's Face-Detector-1MB-with-landmark (plain ReLU, anchors 10..256)."""
    return RetinaFace(**{"network_name": "mobile0.25", "half": False, "variant": "1mb", **overrides})


def retinaface_r50(**overrides) -> RetinaFace:
    """RetinaFace ResNet-50 with facexlib's constructor arguments (``network_name='resnet50'``)."""
    return RetinaFace(**{"network_name": "resnet50", "half": False, **overrides})


# ----------------------------------------------------------------------------------------- anchors and decoding


def prior_boxes(
    image_h: int,
    image_w: int,
    min_sizes: Sequence[Sequence[int]] = MIN_SIZES,
    steps: Sequence[int] = STEPS,
    clip: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Anchors ``(P, 4)`` as ``(cx, cy, w, h)`` normalised by the image size, in the order of the net's outputs.

    Same values and order as facexlib's ``PriorBox``: per level, rows then columns then ``min_sizes``; grid side
    ``ceil(side / step)``, centres at ``(j + 0.5) * step / W``. Built in float64 and cast once, as the official
    Python-float list is, so the float32 result is bit-identical.
    """
    if len(min_sizes) != len(steps):
        raise ValueError(f"need one min_sizes entry per step, got {len(min_sizes)} and {len(steps)}")
    levels = []
    for sizes, step in zip(min_sizes, steps):
        fh, fw = math.ceil(image_h / step), math.ceil(image_w / step)
        cy = (torch.arange(fh, dtype=torch.float64) + 0.5) * step / image_h
        cx = (torch.arange(fw, dtype=torch.float64) + 0.5) * step / image_w
        s = torch.as_tensor(list(sizes), dtype=torch.float64)
        n = len(sizes)
        grid = torch.stack(
            [
                cx.view(1, fw, 1).expand(fh, fw, n),
                cy.view(fh, 1, 1).expand(fh, fw, n),
                (s / image_w).view(1, 1, n).expand(fh, fw, n),
                (s / image_h).view(1, 1, n).expand(fh, fw, n),
            ],
            dim=-1,
        )
        levels.append(grid.reshape(-1, 4))
    priors = torch.cat(levels, dim=0)
    if clip:
        priors = priors.clamp(0.0, 1.0)
    return priors.to(device=device, dtype=dtype)


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor, variances: Sequence[float] = VARIANCES) -> torch.Tensor:
    """Box offsets ``(..., P, 4)`` -> ``(x1, y1, x2, y2)`` normalised to [0, 1] image units; ``priors`` is ``(P, 4)``.

    Leading batch dims broadcast. Multiply by ``(W, H, W, H)`` for pixels. Arithmetic order follows the official
    ``decode`` (x2 = x1 + w), so results match it bit for bit.
    """
    centre = priors[..., :2] + loc[..., :2] * variances[0] * priors[..., 2:]
    size = priors[..., 2:] * torch.exp(loc[..., 2:] * variances[1])
    top_left = centre - size / 2
    return torch.cat([top_left, size + top_left], dim=-1)


def decode_landmarks(landms: torch.Tensor, priors: torch.Tensor, variances: Sequence[float] = VARIANCES) -> torch.Tensor:
    """Landmark offsets ``(..., P, 10)`` -> 5 points ``(..., P, 10)`` as x0, y0, ..., x4, y4 in [0, 1] image units.

    Order of the points: left eye, right eye, nose, left and right mouth corner (image left/right).
    Multiply by ``(W, H) * 5`` for pixels.
    """
    pts = landms.unflatten(-1, (5, 2))
    out = priors[..., None, :2] + pts * variances[0] * priors[..., None, 2:]
    return out.flatten(-2)


# Detection runs on whole images of any size: H and W stay dynamic (one image per call, BGR minus the means).
_IMAGE = TensorSpec((1, 3, 512, 512), dynamic=(2, 3))


def _anchors(min_sizes: Sequence[Sequence[int]]) -> dict:
    # The anchor layout decodes the outputs; a backend-compiled network has no torch module to carry it.
    return {"min_sizes": tuple(tuple(s) for s in min_sizes), "steps": STEPS, "variances": VARIANCES}


RETINAFACE_MNET = ArchSpec(build=retinaface_mnet, inputs=(_IMAGE,), meta=_anchors(MIN_SIZES))
RETINAFACE_MNET_1MB = ArchSpec(build=retinaface_mnet_1mb, inputs=(_IMAGE,), meta=_anchors(MIN_SIZES_1MB))
RETINAFACE_R50 = ArchSpec(build=retinaface_r50, inputs=(_IMAGE,), meta=_anchors(MIN_SIZES))

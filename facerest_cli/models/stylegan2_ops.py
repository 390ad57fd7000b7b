"""StyleGAN2 operators in plain torch, shared by GPEN and SGPN (rosinality-style key layout).

* ``upfirdn2d``: upsample (zero insertion) -> pad -> FIR filter -> downsample, as the CUDA op / its native
  fallback, but vectorised over batch and channels (one depthwise ``conv2d``).
* ``fused_leaky_relu``: ``sqrt(2) * leaky_relu(x + bias, 0.2)``.
* Equalised-learning-rate layers (``EqualConv2d``, ``EqualLinear``, ``ConvLayer``) and ``ModulatedConv2d``.

Tensor convention for every module here: feature maps ``(B, C, H, W)``, any float dtype, any memory format;
latents ``(B, D)``. The blur kernels are persistent buffers named ``kernel`` because the official checkpoints
store them; their values are fixed by the architecture (``make_blur_kernel``), never learned.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Blur",
    "ConvLayer",
    "EqualConv2d",
    "EqualLinear",
    "FusedLeakyReLU",
    "ModulatedConv2d",
    "PixelNorm",
    "ScaledLeakyReLU",
    "Upsample",
    "float32_region",
    "fused_leaky_relu",
    "make_blur_kernel",
    "upfirdn2d",
]

LEAKY_SLOPE = 0.2
LEAKY_GAIN = math.sqrt(2.0)


def float32_region(device: torch.device):
    """Autocast off on ``device``: styles and demodulation sums overflow float16, so they run in float32."""
    return torch.autocast(device_type=device.type, enabled=False)


def make_blur_kernel(taps: Sequence[float], gain: float = 1.0) -> torch.Tensor:
    """Separable FIR taps -> normalised 2D kernel (sums to ``gain``), float32 ``(K, K)``."""
    k = torch.tensor(list(taps), dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum() * gain


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Upsample by ``up`` (zeros), pad ``(pad0, pad1)`` on both axes (negative crops), convolve, keep every ``down``-th.

    The same function as the official ``upfirdn2d`` (CUDA op and ``upfirdn2d_native``): a true convolution
    with ``kernel`` (the native fallback correlates with the flipped kernel). ``x``: ``(B, C, H, W)``.
    """
    b, c, h, w = x.shape
    if up > 1:
        # (B,C,H,1,W,1) padded to (B,C,H,up,W,up): each sample followed by up-1 zeros on both axes.
        x = F.pad(x.reshape(b, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(b, c, h * up, w * up)
    p0, p1 = pad
    if p0 or p1:
        x = F.pad(x, [p0, p1, p0, p1])  # constant_pad_nd crops where a pad is negative
    kh, kw = kernel.shape
    weight = kernel.flip([0, 1]).to(dtype=x.dtype).expand(c, 1, kh, kw)
    return F.conv2d(x, weight, stride=down, groups=c)


def fused_leaky_relu(
    x: torch.Tensor, bias: torch.Tensor, negative_slope: float = LEAKY_SLOPE, scale: float = LEAKY_GAIN
) -> torch.Tensor:
    """``scale * leaky_relu(x + bias)``, ``bias`` per channel (dim 1); works for ``(B, C)`` and ``(B, C, H, W)``."""
    b = bias.to(dtype=x.dtype).view((1, -1) + (1,) * (x.ndim - 2))
    return F.leaky_relu(x + b, negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """Bias + leaky ReLU(0.2) + gain sqrt(2); parameter ``bias`` ``(C,)``."""

    def __init__(self, channels: int, negative_slope: float = LEAKY_SLOPE, scale: float = LEAKY_GAIN):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


class ScaledLeakyReLU(nn.Module):
    """Leaky ReLU(0.2) times sqrt(2), no bias (ConvLayer with ``bias=False``)."""

    def __init__(self, negative_slope: float = LEAKY_SLOPE):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope) * LEAKY_GAIN


class PixelNorm(nn.Module):
    """Normalise each latent vector to unit RMS over dim 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class Blur(nn.Module):
    """``upfirdn2d`` with padding only (no resampling); buffer ``kernel`` scaled by ``upsample_factor**2``."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_blur_kernel(taps, float(upsample_factor**2)))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling of the RGB skip; buffer ``kernel`` scaled by ``factor**2`` to keep the DC gain at 1."""

    def __init__(self, taps: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_blur_kernel(taps, float(factor**2)))
        p = len(taps) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualConv2d(nn.Module):
    """Conv2d with the weight scaled by ``1/sqrt(fan_in)`` at run time (equalised learning rate)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: ``W * lr_mul/sqrt(in)``, ``b * lr_mul``; optional fused leaky ReLU.

    Runs in the dtype of its input (the style path feeds it float32 under ``float32_region``).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: bool = False,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(dtype=x.dtype) * self.scale
        bias = None if self.bias is None else self.bias.to(dtype=x.dtype) * self.lr_mul
        if self.activation:
            out = F.linear(x, weight)
            return out if bias is None else fused_leaky_relu(out, bias)
        return F.linear(x, weight, bias)


class ConvLayer(nn.Sequential):
    """[Blur] -> EqualConv2d -> [FusedLeakyReLU | ScaledLeakyReLU]; indices match the official ``nn.Sequential``.

    ``downsample=True`` blurs with pad ``((p+1)//2, p//2)``, ``p = len(taps) - 2 + k - 1``, then convolves with
    stride 2 and no padding; otherwise "same" padding. The conv has its own bias only when there is no activation.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        downsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        bias: bool = True,
        activate: bool = True,
    ):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU())
        super().__init__(*layers)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution; parameters ``weight (1, out, in, k, k)`` and ``modulation`` (EqualLinear).

    Same function as the official per-sample grouped convolution, computed batched with one shared weight:
    ``out = demod[b, o] * conv(x * s[b], W)`` where ``s = modulation(style) / sqrt(fan_in)`` and
    ``demod = rsqrt(sum_{i,k} (W[o,i,k] s[b,i])^2 + 1e-8)``. ``s`` and ``demod`` are computed in float32 even
    under autocast. ``x``: ``(B, in, H, W)``; ``style``: ``(B, style_dim)``; output ``(B, out, H', W')`` with
    ``H' = 2H`` when ``upsample`` (transposed conv stride 2, then blur).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.upsample = upsample
        self.demodulate = demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        # 5-D as in the checkpoints. Hence ``Module.to(memory_format=torch.channels_last)`` refuses these nets
        # (channels_last needs rank 4): feed channels_last inputs instead, the convolutions keep the format.
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)

    def coefficients(self, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-sample input scales ``(B, in)`` and demodulation ``(B, out)`` (or None), float32."""
        with float32_region(style.device):
            s = self.modulation(style.float()) * self.scale
            if not self.demodulate:
                return s, None
            w2 = self.weight[0].float().square().sum(dim=(2, 3))  # (out, in)
            demod = torch.rsqrt(s.square() @ w2.t() + 1e-8)
            return s, demod

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s, demod = self.coefficients(style)
        x = x * s.to(dtype=x.dtype)[:, :, None, None]
        weight = self.weight[0]
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1).to(dtype=x.dtype), stride=2)
        else:
            out = F.conv2d(x, weight.to(dtype=x.dtype), padding=self.padding)
        if demod is not None:
            out = out * demod.to(dtype=out.dtype)[:, :, None, None]
        if self.upsample:
            out = self.blur(out)
        return out

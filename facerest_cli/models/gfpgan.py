"""GFPGANv1Clean (GFPGAN v1.2 / v1.3 / v1.4): a U-Net encoder whose features steer a StyleGAN2 decoder.

Same function and same ``state_dict`` keys as TencentARC/GFPGAN ``gfpganv1_clean_arch.py`` and
``stylegan2_clean_arch.py``, with two deliberate differences in *how* it is computed:

* Modulated convolution is evaluated in its batch-friendly form: the activations are scaled by the style, one
  shared-weight convolution runs over the whole batch, and the output is scaled by the demodulation
  coefficients. The official code builds a weight per sample and runs a B-group convolution: the same function,
  but B small convolutions plus a weight tensor B times the size of the layer's.
* Styles and demodulation coefficients are computed in float32 even under autocast: the sum of squared
  modulated weights overflows float16.

The modulated convolutions hold their weight as ``(C_out, C_in, k, k)`` so that ``module.to(memory_format=
torch.channels_last)`` works; ``state_dict`` and ``load_state_dict`` still use the official ``(1, C_out, C_in, k, k)``.

The forward defaults differ from the official ones: the stored noise buffers are used (deterministic output)
unless ``randomize_noise=True``, and the intermediate U-Net RGB images are not computed unless asked for.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from facerest_cli.models.arch import ArchSpec, face

_LRELU_SLOPE = 0.2
_DEMOD_EPS = 1e-8


def _resize(x: Tensor, scale_factor: float) -> Tensor:
    # The clean arch resamples with plain bilinear interpolation (no upfirdn2d blur); keep it bit-for-bit.
    return F.interpolate(x, scale_factor=scale_factor, mode="bilinear", align_corners=False)


def _autocast_off(x: Tensor) -> torch.autocast:
    return torch.autocast(device_type=x.device.type, enabled=False)


def _linear_f32(layer: nn.Linear, x: Tensor) -> Tensor:
    # float32 even when the module itself was cast to half (``model.half()``), not only under autocast.
    bias = None if layer.bias is None else layer.bias.float()
    return F.linear(x.float(), layer.weight.float(), bias)


class NormStyleCode(nn.Module):
    """Pixel norm of the style codes over dim 1 (as the official: for a ``(B, L, C)`` code that is the L axis)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (no bias), optionally demodulated and preceded by a 2x bilinear upsample.

    ``modulation`` maps a style ``(B, S)`` to per-input-channel scales ``(B, C_in)``. ``weight`` is the shared
    ``(C_out, C_in, k, k)`` kernel; in the state dict it is ``(1, C_out, C_in, k, k)``, as in the official file.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        num_style_feat: int,
        demodulate: bool = True,
        upsample: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.demodulate = demodulate
        self.upsample = upsample
        self.padding = kernel_size // 2
        self.modulation = nn.Linear(num_style_feat, in_channels, bias=True)
        nn.init.kaiming_normal_(self.modulation.weight, a=0, mode="fan_in", nonlinearity="linear")
        nn.init.ones_(self.modulation.bias)
        fan_in = in_channels * kernel_size**2
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / math.sqrt(fan_in))

    # A 5-D parameter cannot take channels_last (Module.to raises), so the official leading 1 lives only in the
    # state dict. Same override points as BatchNorm's num_batches_tracked handling.
    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "weight"] = destination[prefix + "weight"].unsqueeze(0)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        w = state_dict.get(prefix + "weight")
        if isinstance(w, Tensor) and w.ndim == 5 and w.shape[0] == 1:
            state_dict[prefix + "weight"] = w[0]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def scales(self, style: Tensor) -> tuple[Tensor, Tensor | None]:
        """float32 ``(in_scale (B, C_in), out_scale (B, C_out) or None)`` with ``out = conv(x*in, W) * out``.

        Demodulation: ``d[b,o] = rsqrt(sum_{i,k} (W[o,i,k] s[b,i])^2 + eps)``, i.e. ``s^2 @ sum_k W^2``. The style
        is divided by its per-sample RMS ``r`` and ``d`` multiplied by it: the product is unchanged (eps is
        scaled by ``1/r^2`` to match), but the pre-demodulation activations keep the magnitude of the input, so
        half-precision convolutions do not overflow when the styles are large.
        """
        with _autocast_off(style):
            s = _linear_f32(self.modulation, style)
            if not self.demodulate:
                return s, None
            r = s.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-6)
            s = s / r
            w_sq = self.weight.float().pow(2).sum(dim=(2, 3))  # (C_out, C_in)
            d = torch.rsqrt(s.pow(2) @ w_sq.t() + _DEMOD_EPS / r.pow(2))
            return s, d

    def conv(self, x: Tensor, in_scale: Tensor) -> Tensor:
        """Scaled-input shared-weight convolution (the pre-demodulation output), ``(B, C_out, H', W')``."""
        # Scaling per channel commutes with bilinear upsampling; do it first, on 4x fewer pixels.
        x = x * in_scale.to(x.dtype)[:, :, None, None]
        if self.upsample:
            x = _resize(x, 2)
        return F.conv2d(x, self.weight, padding=self.padding)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        """``x`` ``(B, C_in, H, W)``, ``style`` ``(B, S)`` -> ``(B, C_out, H', W')`` (H' = 2H when upsampling)."""
        in_scale, out_scale = self.scales(style)
        out = self.conv(x, in_scale)
        if out_scale is not None:
            out = out * out_scale.to(out.dtype)[:, :, None, None]
        return out


class StyleConv(nn.Module):
    """Modulated 3x3 conv, noise injection, bias, leaky ReLU(0.2). ``weight`` is the noise strength (shape (1,))."""

    def __init__(self, in_channels: int, out_channels: int, num_style_feat: int, upsample: bool = False) -> None:
        super().__init__()
        self.modulated_conv = ModulatedConv2d(
            in_channels, out_channels, 3, num_style_feat, demodulate=True, upsample=upsample
        )
        self.weight = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: Tensor, style: Tensor, noise: Tensor | None) -> Tensor:
        """``noise``: ``(1 or B, 1, H', W')`` or None for fresh per-sample Gaussian noise."""
        in_scale, out_scale = self.modulated_conv.scales(style)
        out = self.modulated_conv.conv(x, in_scale)
        if noise is None:
            noise = torch.randn(out.shape[0], 1, *out.shape[2:], device=out.device, dtype=out.dtype)
        assert out_scale is not None  # StyleConv always demodulates
        # The official multiplies the demodulated output by sqrt(2) (a fixed gain): fold it into the per-channel
        # output scale. Bias (1, C, 1, 1) and noise (1 or B, 1, H, W) are added separately, because their
        # (1, C, H, W) sum would be the first operand of the add and set an NCHW layout for a channels_last output.
        scale = (out_scale * math.sqrt(2.0)).to(out.dtype)[:, :, None, None]
        out = torch.addcmul(self.bias.to(out.dtype), out, scale)
        out = out + self.weight.to(out.dtype) * noise.to(out.dtype)
        return F.leaky_relu(out, _LRELU_SLOPE, inplace=True)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (not demodulated) plus bias, added to the 2x-upsampled previous RGB skip."""

    def __init__(self, in_channels: int, num_style_feat: int, upsample: bool = True) -> None:
        super().__init__()
        self.upsample = upsample
        self.modulated_conv = ModulatedConv2d(in_channels, 3, 1, num_style_feat, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, style: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.modulated_conv(x, style)
        out = out + self.bias.to(out.dtype)  # a float32 parameter would promote a half-precision output
        if skip is not None:
            out = out + (_resize(skip, 2) if self.upsample else skip)
        return out


class ConstantInput(nn.Module):
    """The learned 4x4 input of the StyleGAN2 decoder, ``weight`` ``(1, C, 4, 4)``."""

    def __init__(self, num_channel: int, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, num_channel, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.weight.expand(batch, -1, -1, -1)


def _stylegan_channels(narrow: float, channel_multiplier: int) -> dict[int, int]:
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
            256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    return {res: int(c * narrow) for res, c in base.items()}


class StyleGAN2GeneratorCSFT(nn.Module):
    """StyleGAN2 decoder whose first conv of each resolution is modulated by SFT conditions (scale, shift).

    Input: per-layer latents ``(B, num_latent, S)`` (or ``(B, S)``, repeated); output RGB ``(B, 3, R, R)``.
    """

    def __init__(
        self,
        out_size: int,
        num_style_feat: int = 512,
        num_mlp: int = 8,
        channel_multiplier: int = 2,
        narrow: float = 1,
        sft_half: bool = False,
    ) -> None:
        super().__init__()
        self.num_style_feat = num_style_feat
        self.sft_half = sft_half
        mlp: list[nn.Module] = [NormStyleCode()]
        for _ in range(num_mlp):
            linear = nn.Linear(num_style_feat, num_style_feat, bias=True)
            nn.init.kaiming_normal_(linear.weight, a=0.2, mode="fan_in", nonlinearity="leaky_relu")
            nn.init.zeros_(linear.bias)
            mlp += [linear, nn.LeakyReLU(_LRELU_SLOPE, inplace=True)]
        self.style_mlp = nn.Sequential(*mlp)

        channels = _stylegan_channels(narrow, channel_multiplier)
        self.log_size = int(math.log(out_size, 2))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.num_latent = self.log_size * 2 - 2

        self.constant_input = ConstantInput(channels[4], size=4)
        self.style_conv1 = StyleConv(channels[4], channels[4], num_style_feat)
        self.to_rgb1 = ToRGB(channels[4], num_style_feat, upsample=False)
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer in range(self.num_layers):
            res = 2 ** ((layer + 5) // 2)
            self.noises.register_buffer(f"noise{layer}", torch.randn(1, 1, res, res))
        in_channels = channels[4]
        for i in range(3, self.log_size + 1):
            out_channels = channels[2**i]
            self.style_convs.append(StyleConv(in_channels, out_channels, num_style_feat, upsample=True))
            self.style_convs.append(StyleConv(out_channels, out_channels, num_style_feat))
            self.to_rgbs.append(ToRGB(out_channels, num_style_feat, upsample=True))
            in_channels = out_channels

    def _sft(self, out: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
        if not self.sft_half:
            return torch.addcmul(shift, out, scale)
        half = out.shape[1] // 2
        return torch.cat([out[:, :half], torch.addcmul(shift, out[:, half:], scale)], dim=1)

    def forward(
        self,
        styles: Tensor,
        conditions: list[Tensor],
        input_is_latent: bool = False,
        randomize_noise: bool = False,
    ) -> Tensor:
        """``styles`` ``(B, num_latent, S)`` or ``(B, S)``; ``conditions`` alternate SFT scale and shift maps,
        coarse to fine (there may be fewer levels than the decoder has). Returns RGB ``(B, 3, R, R)``."""
        if not input_is_latent:
            styles = self.style_mlp(styles)
        latent = styles if styles.ndim == 3 else styles.unsqueeze(1).expand(-1, self.num_latent, -1)
        noises: list[Tensor | None]
        if randomize_noise:
            noises = [None] * self.num_layers
        else:
            noises = [getattr(self.noises, f"noise{i}") for i in range(self.num_layers)]

        out = self.constant_input(latent.shape[0])
        out = self.style_conv1(out, latent[:, 0], noises[0])
        skip = self.to_rgb1(out, latent[:, 1])
        for level, to_rgb in enumerate(self.to_rgbs):
            i = 2 * level + 1  # latent / noise index of this level's first conv
            out = self.style_convs[2 * level](out, latent[:, i], noises[i])
            if i < len(conditions):
                out = self._sft(out, conditions[i - 1], conditions[i])
            out = self.style_convs[2 * level + 1](out, latent[:, i + 1], noises[i + 1])
            skip = to_rgb(out, latent[:, i + 2], skip)
        return skip


class ResBlock(nn.Module):
    """Residual block that resamples 2x (``mode`` "down" or "up") with bilinear interpolation."""

    def __init__(self, in_channels: int, out_channels: int, mode: str) -> None:
        super().__init__()
        if mode not in ("down", "up"):
            raise ValueError(f"ResBlock mode must be 'down' or 'up', got {mode!r}")
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.scale_factor = 0.5 if mode == "down" else 2.0

    def forward(self, x: Tensor) -> Tensor:
        out = F.leaky_relu(self.conv1(x), _LRELU_SLOPE, inplace=True)
        out = F.leaky_relu(self.conv2(_resize(out, self.scale_factor)), _LRELU_SLOPE, inplace=True)
        return out + self.skip(_resize(x, self.scale_factor))


def _sft_branch(channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, 1, 1),
        nn.LeakyReLU(_LRELU_SLOPE, inplace=True),
        nn.Conv2d(channels, out_channels, 3, 1, 1),
    )


class GFPGANv1Clean(nn.Module):
    """GFPGAN v1 (clean): U-Net encoder -> per-layer latents + SFT conditions -> StyleGAN2 decoder.

    Input ``x``: ``(B, 3, out_size, out_size)`` float, **RGB in [-1, 1]** (an FFHQ-aligned face crop).
    Output: ``(image, out_rgbs)``, ``image`` ``(B, 3, out_size, out_size)`` RGB, nominally [-1, 1] (not clamped);
    ``out_rgbs`` are the U-Net's intermediate RGB images (8x8 .. out_size), empty unless ``return_rgb=True``.

    ``decoder_load_path`` and ``fix_decoder`` exist so that the official constructor arguments are accepted
    verbatim; loading files is the weights loader's job, so only ``decoder_load_path=None`` is allowed.
    """

    def __init__(
        self,
        out_size: int,
        num_style_feat: int = 512,
        channel_multiplier: int = 1,
        decoder_load_path: str | None = None,
        fix_decoder: bool = True,
        num_mlp: int = 8,
        input_is_latent: bool = False,
        different_w: bool = False,
        narrow: float = 1,
        sft_half: bool = False,
    ) -> None:
        super().__init__()
        if decoder_load_path is not None:
            raise ValueError(
                f"decoder_load_path={decoder_load_path!r}: architectures do no I/O; "
                "load weights with facerest_cli.weights.loader"
            )
        if out_size < 8 or 2 ** int(math.log(out_size, 2)) != out_size:
            raise ValueError(f"out_size must be a power of two >= 8, got {out_size}")
        self.out_size = out_size
        self.input_is_latent = input_is_latent
        self.different_w = different_w
        self.num_style_feat = num_style_feat
        self.log_size = int(math.log(out_size, 2))

        # The U-Net uses half the decoder's channel widths.
        channels = _stylegan_channels(narrow * 0.5, channel_multiplier)
        self.conv_body_first = nn.Conv2d(3, channels[out_size], 1)
        self.conv_body_down = nn.ModuleList()
        in_channels = channels[out_size]
        for i in range(self.log_size, 2, -1):
            self.conv_body_down.append(ResBlock(in_channels, channels[2 ** (i - 1)], mode="down"))
            in_channels = channels[2 ** (i - 1)]
        self.final_conv = nn.Conv2d(in_channels, channels[4], 3, 1, 1)

        self.conv_body_up = nn.ModuleList()
        in_channels = channels[4]
        for i in range(3, self.log_size + 1):
            self.conv_body_up.append(ResBlock(in_channels, channels[2**i], mode="up"))
            in_channels = channels[2**i]
        self.toRGB = nn.ModuleList(nn.Conv2d(channels[2**i], 3, 1) for i in range(3, self.log_size + 1))

        num_latent = self.log_size * 2 - 2
        self.final_linear = nn.Linear(channels[4] * 4 * 4, num_style_feat * (num_latent if different_w else 1))
        self.stylegan_decoder = StyleGAN2GeneratorCSFT(
            out_size=out_size,
            num_style_feat=num_style_feat,
            num_mlp=num_mlp,
            channel_multiplier=channel_multiplier,
            narrow=narrow,
            sft_half=sft_half,
        )
        if fix_decoder:
            self.stylegan_decoder.requires_grad_(False)

        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        for i in range(3, self.log_size + 1):
            c = channels[2**i]
            sft_channels = c if sft_half else 2 * c
            self.condition_scale.append(_sft_branch(c, sft_channels))
            self.condition_shift.append(_sft_branch(c, sft_channels))

    def forward(
        self, x: Tensor, *, return_rgb: bool = False, randomize_noise: bool = False
    ) -> tuple[Tensor, list[Tensor]]:
        """Restore a batch of aligned faces; see the class docstring for the tensor convention.

        ``randomize_noise=False`` (default) injects the stored ``noises.noiseN`` buffers, so the output is a
        deterministic function of ``x``; ``True`` draws fresh per-sample noise, as the official default does.
        """
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != self.out_size or x.shape[3] != self.out_size:
            want = f"(B, 3, {self.out_size}, {self.out_size})"
            raise ValueError(f"GFPGAN expects {want} RGB in [-1, 1], got {tuple(x.shape)}")
        feat = F.leaky_relu(self.conv_body_first(x), _LRELU_SLOPE, inplace=True)
        unet_skips: list[Tensor] = []
        for block in self.conv_body_down:
            feat = block(feat)
            unet_skips.append(feat)
        feat = F.leaky_relu(self.final_conv(feat), _LRELU_SLOPE, inplace=True)

        with _autocast_off(feat):
            style_code = _linear_f32(self.final_linear, feat.flatten(1))
        if self.different_w:
            style_code = style_code.view(style_code.shape[0], -1, self.num_style_feat)

        conditions: list[Tensor] = []
        out_rgbs: list[Tensor] = []
        for i, block in enumerate(self.conv_body_up):
            feat = block(feat + unet_skips[-1 - i])
            conditions.append(self.condition_scale[i](feat))
            conditions.append(self.condition_shift[i](feat))
            if return_rgb:
                out_rgbs.append(self.toRGB[i](feat))

        image = self.stylegan_decoder(
            style_code, conditions, input_is_latent=self.input_is_latent, randomize_noise=randomize_noise
        )
        return image, out_rgbs


def gfpgan_v1_clean(**overrides: Any) -> GFPGANv1Clean:
    """GFPGANv1Clean with the arguments of the released GFPGANv1.3 / v1.4 (and v1.2 "CleanNoCE") weights."""
    kwargs: dict[str, Any] = dict(
        out_size=512,
        num_style_feat=512,
        channel_multiplier=2,
        decoder_load_path=None,
        fix_decoder=False,
        num_mlp=8,
        input_is_latent=True,
        different_w=True,
        narrow=1,
        sft_half=True,
    )
    kwargs.update(overrides)
    return GFPGANv1Clean(**kwargs)


def _restore(net: GFPGANv1Clean, x: Tensor) -> Tensor:
    # GFPGANer.enhance: ``output = net(x, return_rgb=False, weight=0.5)[0]``; we keep the stored noise (deterministic).
    return net(x, return_rgb=False, randomize_noise=False)[0]


GFPGAN_V1_CLEAN = ArchSpec(build=gfpgan_v1_clean, call=_restore, inputs=(face(512),), bf16=True)

"""Background upsampler networks: which exist, how they load, how a batch of tiles runs.

An upsampler is a weights.toml entry with ``role = "upsampler"``; its ``arch`` fixes the network's scale and the
multiple its input sides must have (RRDBNet x2 pixel-unshuffles by 2). Tiles go through :class:`UpsamplerNet`:
``(N, 3, h, w)`` float32 **RGB** in [0, 1] (no mean/std) in, ``(N, 3, h*scale, w*scale)`` float32 out, not clamped
(as the official network; ``RealESRGANer`` clamps after cropping).

``--denoise-strength dn`` (realesr-general-x4v3 only) is Real-ESRGAN's deep network interpolation: every weight
becomes ``dn * x4v3 + (1 - dn) * wdn`` before the strict load, ``dn = 1`` being x4v3 alone (no wdn file needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from facerest_cli.errors import UsageError, WeightsError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from facerest_cli.weights.cache import WeightsStore
    from facerest_cli.weights.registry import WeightsEntry

# arch -> (network scale, input side multiple)
ARCH_SCALE: dict[str, tuple[int, int]] = {
    "realesrgan_x2plus": (2, 2),
    "realesrgan_x4plus": (4, 1),
    "realesr_general_x4v3": (4, 1),
}
# The entry interpolated with this one by --denoise-strength (the official code derives the wdn path from the name).
DNI_PARTNER: dict[str, str] = {"realesr-general-x4v3": "realesr-general-wdn-x4v3"}
PRECISIONS = ("fp32", "fp16", "bf16")


def upsampler_names(registry) -> list[str]:
    """Every weights.toml entry usable as ``--bg-upsampler`` (role ``upsampler``), in file order."""
    return [e.name for e in registry.by_role("upsampler")]


def upsampler_weights(name: str, denoise_strength: float | None, registry) -> list[str]:
    """The weights entries ``--bg-upsampler NAME [--denoise-strength dn]`` needs (checked before any image is
    touched): the upsampler, and its wdn twin when ``dn < 1``. Raises ``UsageError`` for an unknown name or a
    ``--denoise-strength`` the upsampler has no use for."""
    choices = upsampler_names(registry)
    if name not in choices:
        raise UsageError(f"--bg-upsampler must be none or one of {', '.join(choices)}; got {name!r}")
    partner = DNI_PARTNER.get(name)
    if denoise_strength is not None and partner is None:
        raise UsageError(f"--denoise-strength applies to {', '.join(DNI_PARTNER)} only (got --bg-upsampler {name})")
    dn = 0.5 if denoise_strength is None else float(denoise_strength)
    return [name, partner] if partner is not None and dn != 1.0 else [name]


def network_scale(entry: "WeightsEntry") -> tuple[int, int]:
    """``(scale, align)`` of an upsampler entry's architecture: the built-in table, or for a user's architecture
    (``arch = "package.module:SPEC"``) its ``ArchSpec.meta`` ``{"scale": s, "align": a}`` (align defaults to 1)."""
    if entry.arch in ARCH_SCALE:
        return ARCH_SCALE[entry.arch]
    meta = {}
    if ":" in entry.arch:
        from facerest_cli.models.registry import arch_spec

        meta = dict(arch_spec(entry.arch).meta)
    if "scale" not in meta:
        raise WeightsError(f"weights.toml[{entry.name}]: arch {entry.arch!r} is not an upsampler architecture "
                           "(a user's upsampler ArchSpec needs meta={'scale': S, 'align': A})")
    scale, align = int(meta["scale"]), int(meta.get("align", 1))
    if scale < 1 or align < 1:
        raise WeightsError(f"weights.toml[{entry.name}]: arch {entry.arch!r} meta scale/align must be >= 1")
    return scale, align


def interpolate_state_dicts(a: Mapping[str, "torch.Tensor"], b: Mapping[str, "torch.Tensor"], weight_a: float,
                            where: str = "dni") -> dict[str, "torch.Tensor"]:
    """Deep network interpolation: ``weight_a * a[k] + (1 - weight_a) * b[k]`` for every key of ``a``.

    The same float32 expression as ``RealESRGANer.dni`` (python-float weights times float32 tensors), so the
    interpolated net equals the official one bit for bit. ``a`` and ``b`` must have the same keys and shapes.
    """
    if set(a) != set(b):
        extra = sorted(set(a) ^ set(b))[:3]
        raise WeightsError(f"{where}: the two checkpoints have different keys (e.g. {extra}); both must be one arch")
    w_a, w_b = float(weight_a), 1.0 - float(weight_a)
    out = {}
    for k, v in a.items():
        if tuple(v.shape) != tuple(b[k].shape):
            raise WeightsError(f"{where}: {k} has shape {tuple(v.shape)} in one file and {tuple(b[k].shape)} in the other")
        out[k] = w_a * v + w_b * b[k]
    return out


def build_upsampler_module(entry: "WeightsEntry", path: Path | str, *, denoise_strength: float | None = None,
                           partner: "WeightsEntry | None" = None, partner_path: Path | str | None = None) -> "nn.Module":
    """Build ``entry.arch`` and load ``path`` strictly (eval mode); with ``denoise_strength < 1`` interpolate with
    ``partner_path`` first (dni). Paths must already be verified (the store does that)."""
    from facerest_cli.models.registry import build_arch
    from facerest_cli.weights.loader import extract_state_dict, load_state_dict_exact, torch_load_safe

    network_scale(entry)
    module = build_arch(entry.arch)
    sd = extract_state_dict(torch_load_safe(path), entry.file(), path)
    if denoise_strength is not None and float(denoise_strength) != 1.0:
        if not 0.0 <= float(denoise_strength) <= 1.0:
            raise UsageError(f"--denoise-strength must be in [0, 1], got {denoise_strength}")
        if partner is None or partner_path is None:
            raise UsageError(f"--denoise-strength applies to {', '.join(DNI_PARTNER)} only (got {entry.name})")
        sd_b = extract_state_dict(torch_load_safe(partner_path), partner.file(), partner_path)
        sd = interpolate_state_dicts(sd, sd_b, float(denoise_strength), where=f"{path} + {partner_path}")
    load_state_dict_exact(module, sd, path)
    return module.eval()


@dataclass(frozen=True)
class UpsamplerInfo:
    name: str
    scale: int  # network scale (2 or 4)
    align: int  # input H and W must be multiples of this
    denoise_strength: float | None


class UpsamplerNet:
    """A loaded upsampler on a device and precision.

    ``run(x)``: ``(N, 3, h, w)`` float32 RGB [0, 1] numpy -> ``(N, 3, h*s, w*s)`` float32 numpy, unclamped.
    ``forward(t)``: the same on torch tensors (already on ``device``), used by the exact-official mode.
    Precision ``fp16``/``bf16`` cast the weights and the input (as ``RealESRGANer(half=True)`` does); the output
    is returned as float32. fp32 on CUDA runs with TF32 off (inside this call only), so it matches the goldens.
    The module is moved and cast in place (``nn.Module.to``): pass a copy to keep the original.
    """

    def __init__(self, module: "nn.Module", info: UpsamplerInfo, device: str = "cpu", precision: str = "fp32"):
        import torch

        if precision not in PRECISIONS:
            raise UsageError(f"upsampler precision must be one of {PRECISIONS}, got {precision!r}")
        self.info = info
        self.device = torch.device(device)
        if precision == "fp16" and self.device.type == "cpu":
            raise UsageError("upsampler precision fp16 needs a GPU; on CPU use fp32 or bf16")
        self.precision = precision
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        module = module.to(self.device, self.dtype).eval()
        for p in module.parameters():
            p.requires_grad_(False)
        self.module = module
        self.calls = 0

    @property
    def scale(self) -> int:
        return self.info.scale

    @property
    def align(self) -> int:
        return self.info.align

    def _flags(self):
        import contextlib

        import torch

        if self.device.type == "cuda" and self.precision == "fp32":
            return torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False)
        return contextlib.nullcontext()

    def forward(self, t: "torch.Tensor") -> "torch.Tensor":
        import torch

        with torch.inference_mode(), self._flags():
            self.calls += 1
            return self.module(t.to(self.device, self.dtype)).float()

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (N, 3, h, w) tiles, got {x.shape}")
        out = self.forward(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        return out.cpu().numpy()

    __call__ = run


def load_upsampler(name: str, store: "WeightsStore", *, denoise_strength: float | None = 0.5, device: str = "cpu",
                   precision: str = "fp32") -> UpsamplerNet:
    """``--bg-upsampler NAME``: fetch/verify its file(s) through ``store`` and return it ready to run.

    ``denoise_strength`` is used by realesr-general-x4v3 only (default 0.5 as the official CLI; 1 = no wdn file);
    it is ignored for the other upsamplers, which have no wdn twin.
    """
    entry = store.registry.get(name)
    if entry.role != "upsampler":
        raise UsageError(f"--bg-upsampler {name!r}: weights.toml role is {entry.role!r}, not 'upsampler'")
    scale, align = network_scale(entry)
    partner_name = DNI_PARTNER.get(name)
    dn = denoise_strength if partner_name is not None else None
    partner = partner_path = None
    if dn is not None and float(dn) != 1.0:
        partner = store.registry.get(partner_name)
        partner_path = store.ensure(partner_name)
    module = build_upsampler_module(entry, store.ensure(name), denoise_strength=dn, partner=partner,
                                    partner_path=partner_path)
    return UpsamplerNet(module, UpsamplerInfo(name, scale, align, dn), device=device, precision=precision)

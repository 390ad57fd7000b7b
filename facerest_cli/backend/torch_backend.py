"""The torch backend: the module run eagerly, in fp32 or under autocast (bf16 on CPU; fp16/bf16 on CUDA).

fp32 is the module exactly as today (no layout change, no autocast), so ``--backend torch --precision fp32``
stays bit-for-bit the current output. Under autocast the ops that must stay fp32 (StyleGAN2 modulation and
demodulation, CodeFormer's AdaIN statistics and code softmax, RestoreFormer++'s codebook distances) are guarded
in the model files with ``torch.autocast(device_type=<the tensor's device>, enabled=False)`` or explicit
``.float()``, so the same guard holds on CPU and CUDA.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Sequence

import torch

from facerest_cli.backend.network import BuildInfo, as_tensors


class TorchNetwork:
    """``call`` (a ``TensorCall``) on ``device``: ``net(*inputs)`` takes torch tensors or numpy arrays (batch
    first, any batch size) and returns float32 torch tensors on ``device`` (one tensor, or a tuple).

    ``channels_last``: feed 4-D inputs (and the module, where its weights allow) in NHWC. ``None`` picks it for
    reduced precision only: under CPU bf16 autocast it saves a third of the work (GFPGAN 6.0 -> 4.0 CPU s per
    face, GPEN 4.8 -> 3.9; oneDNN's bf16 kernels are NHWC, so NCHW pays a reorder around every convolution).
    fp32 keeps the module's own layout so it stays bit-identical to today's output (the torch recognizers pass
    ``True``, as they do today). The module is moved to ``device`` and re-laid out in place.
    """

    backend = "torch"

    def __init__(self, call: torch.nn.Module, device: str = "cpu", precision: str = "fp32",
                 channels_last: bool | None = None, fp32_scopes: Sequence[str] = (), notes: Sequence[str] = ()):
        t0 = time.perf_counter()
        self.device = torch.device(device)
        self.precision = precision
        self.channels_last = (precision != "fp32") if channels_last is None else channels_last
        call = call.to(self.device).eval()
        for p in call.parameters():
            p.requires_grad_(False)
        if self.channels_last:
            with contextlib.suppress(RuntimeError):
                # GPEN/SGPN/GFPGAN keep the official 5-D modulated weights, which have no channels_last form;
                # a channels_last input still propagates the format through their 4-D convolutions.
                call = call.to(memory_format=torch.channels_last)
        if precision != "fp32":
            for scope in fp32_scopes:
                if scope:  # "": the network's own ops, guarded in the model code
                    keep_fp32(call.net.get_submodule(scope), self.device.type)
        self.call = call
        self._dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        self._lock = threading.Lock()  # autocast state is per thread, but one module serves one call at a time
        self.info = BuildInfo("torch", precision, "eager", time.perf_counter() - t0, notes=tuple(notes))

    def _autocast(self):
        if self._dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self._dtype)

    def __call__(self, *inputs: Any):
        xs = []
        for x in as_tensors(inputs):
            x = x.to(self.device, non_blocking=True)
            if self.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            xs.append(x)
        with self._lock, torch.inference_mode(), self._autocast():
            out = self.call(*xs)
        if isinstance(out, (tuple, list)):
            return tuple(_f32(o) for o in out)
        return _f32(out)


def keep_fp32(module: torch.nn.Module, device_type: str) -> None:
    """Run ``module`` (each item of a ModuleList/ModuleDict) in float32 even under autocast: inputs cast to
    float32, autocast off inside. Idempotent, and a no-op without autocast (fp32 stays bit-identical)."""
    if isinstance(module, (torch.nn.ModuleList, torch.nn.ModuleDict)):
        for child in module.children():
            keep_fp32(child, device_type)
        return
    if getattr(module, "_facerest_fp32", False):
        return
    inner = module.forward

    def forward(*args, **kwargs):
        with torch.autocast(device_type=device_type, enabled=False):
            args = tuple(_up(a) for a in args)
            kwargs = {k: _up(v) for k, v in kwargs.items()}
            return inner(*args, **kwargs)

    module.forward = forward  # an instance attribute: the class and the state dict are unchanged
    module._facerest_fp32 = True


def _up(x):
    return x.float() if isinstance(x, torch.Tensor) and x.is_floating_point() else x


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.is_floating_point() else t

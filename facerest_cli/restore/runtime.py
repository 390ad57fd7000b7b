"""Batched restorer inference: numpy crops in, numpy crops out; device, precision and strength handled here.

The only place that moves face crops between host and device. Crops travel as their native integer dtype (a
quarter of float32's bytes) and are normalised on the device.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from facerest_cli.errors import UsageError
from facerest_cli.restore.base import Restorer


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` if available, else ``mps``, else ``cpu``; explicit names are validated."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__})")
        if ":" in name:
            idx = int(name.split(":", 1)[1])
            if idx >= torch.cuda.device_count():
                raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
        return name
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise UsageError("--device mps: Apple MPS is not available on this machine")
        return name
    if name == "cpu":
        return name
    raise UsageError(f"--device must be auto, cpu, cuda, cuda:N or mps; got {name!r}")


class RestoreRuntime:
    """Runs ``restorer`` on batches of crops.

    ``restore(crops, strengths)``: ``crops`` is a sequence of ``(S, S, 3)`` uint8/uint16 BGR arrays (one dtype
    per call); returns ``(N, S, S, 3)`` float32 BGR in [0, 1] where face ``i`` is
    ``strengths[i] * restored + (1 - strengths[i]) * input`` (so strength 0 gives the input crop back exactly).
    """

    def __init__(self, restorer: Restorer, device: str = "cpu", precision: str = "fp32"):
        import torch

        self.restorer = restorer
        self.device = torch.device(device)
        if precision not in ("fp32", "fp16", "bf16"):
            raise UsageError(f"--precision must be fp32, fp16 or bf16; got {precision!r}")
        if precision != "fp32" and self.device.type == "cpu":
            # CPU autocast in half precision is slower than fp32 and less accurate; say so instead of pretending.
            raise UsageError(f"--precision {precision} needs a GPU (--device cuda); use fp32 on CPU")
        self.precision = precision
        self.calls = 0

    def _autocast(self):
        import contextlib

        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def restore(self, crops: Sequence[np.ndarray], strengths: Sequence[float], prior: Any | None = None) -> np.ndarray:
        import torch

        if not len(crops):
            return np.zeros((0, self.restorer.size, self.restorer.size, 3), np.float32)
        batch = np.stack(crops)  # (N, S, S, 3) BGR
        maxval = 65535.0 if batch.dtype == np.uint16 else 255.0
        if batch.dtype == np.uint16:
            batch = batch.astype(np.int32)  # torch has no uint16 arithmetic on every backend
        host = torch.from_numpy(batch)
        if self.device.type == "cuda":
            host = host.pin_memory()
        x = host.to(self.device, non_blocking=True).permute(0, 3, 1, 2).flip(1).float().div_(maxval)  # RGB [0,1]
        s = torch.tensor(list(strengths), dtype=torch.float32, device=self.device).view(-1, 1, 1, 1)
        with torch.inference_mode():
            with self._autocast():
                y = self.restorer(x, prior=prior) if self.restorer.needs_prior else self.restorer(x)
            y = y.float().clamp(0.0, 1.0)
            out = torch.where(s >= 1.0, y, torch.where(s <= 0.0, x, s * y + (1.0 - s) * x))
            out = out.flip(1).permute(0, 2, 3, 1).contiguous().cpu().numpy()
        self.calls += 1
        return out

"""Batched restorer inference: numpy crops in, numpy crops out; device, precision and strength handled here.

The only place that moves face crops between host and device. Crops travel as their native integer dtype (a
quarter of float32's bytes) and are normalised on the device.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from facerest_cli.errors import FacerestError, UsageError
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
        self.max_batch: int | None = None  # lowered when the device runs out of memory
        self.oom_events = 0
        self.last_notes: list[str] = []  # what the last ``restore`` call had to do (the report notes it per face)

    def _autocast(self):
        import contextlib

        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def restore(self, crops: Sequence[np.ndarray], strengths: Sequence[float], prior: Any | None = None) -> np.ndarray:
        """Restore a batch. If the device runs out of memory the batch is halved and retried (down to one crop),
        and later batches stay at the size that fitted; ``last_notes`` says so."""
        self.last_notes = []
        if not len(crops):
            return np.zeros((0, self.restorer.size, self.restorer.size, 3), np.float32)
        return self._restore_fitting(list(crops), list(strengths), prior)

    def _restore_fitting(self, crops: list[np.ndarray], strengths: list[float], prior: Any | None) -> np.ndarray:
        import torch

        n = len(crops)
        limit = self.max_batch or n
        if n > limit:
            parts = [self._restore_fitting(crops[i : i + limit], strengths[i : i + limit], _part(prior, i, i + limit))
                     for i in range(0, n, limit)]
            return np.concatenate(parts)
        try:
            return self._restore_batch(crops, strengths, prior)
        except torch.OutOfMemoryError:  # torch.cuda.OutOfMemoryError is the same class
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if n == 1:
                raise FacerestError(
                    f"out of {self.device.type} memory restoring a single face crop with {self.restorer.name}; try "
                    "--precision fp16, a smaller restorer or --device cpu"
                ) from None
            half = (n + 1) // 2
            self.max_batch = half
            self.oom_events += 1
            self.last_notes.append(f"{self.device.type} out of memory with a batch of {n}: halved to {half} and retried")
            return np.concatenate([
                self._restore_fitting(crops[:half], strengths[:half], _part(prior, 0, half)),
                self._restore_fitting(crops[half:], strengths[half:], _part(prior, half, n)),
            ])

    def summary(self) -> dict:
        """For summary.json: only present when memory ran out."""
        if not self.oom_events:
            return {}
        return {"restore_out_of_memory": {"events": self.oom_events, "batch_size_after": self.max_batch}}

    def _restore_batch(self, crops: list[np.ndarray], strengths: list[float], prior: Any | None) -> np.ndarray:
        import torch

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


def _part(prior: Any | None, a: int, b: int) -> Any | None:
    """Faces ``a:b`` of a per-face prior (a list, tensor or array), or None."""
    return None if prior is None else prior[a:b]

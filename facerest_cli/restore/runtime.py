"""Batched restorer inference: numpy crops in, numpy crops out; device, memory and strength handled here (the
network's precision and backend are its own: ``facerest_cli.registry.Execution``).

The only place that moves face crops between host and device. Crops travel as their native integer dtype (a
quarter of float32's bytes) and are normalised on the device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from facerest_cli.errors import FacerestError, UsageError
from facerest_cli.pixels import crops_to_tensor, tensor_to_crops
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


@dataclass(frozen=True)
class OutOfMemorySummary:
    """summary.json ``restore_out_of_memory``: how often the device ran out of memory, and the batch it settled on."""

    key: ClassVar[str] = "restore_out_of_memory"
    events: int
    batch_size_after: int | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class RestoreRuntime:
    """Runs ``restorer`` on batches of crops.

    ``restore(crops, strengths)``: ``crops`` is a sequence of ``(S, S, 3)`` uint8/uint16 BGR arrays (one dtype
    per call); returns ``(N, S, S, 3)`` float32 BGR in [0, 1] where face ``i`` is
    ``strengths[i] * restored + (1 - strengths[i]) * input`` (so strength 0 gives the input crop back exactly).
    """

    def __init__(self, restorer: Restorer, device: str = "cpu"):
        import torch

        self.restorer = restorer
        self.device = torch.device(device)
        self.calls = 0
        self.max_batch: int | None = None  # lowered when the device runs out of memory
        self.oom_events = 0
        self.last_notes: list[str] = []  # what the last ``restore`` call had to do (the report notes it per face)

    def restore(self, crops: Sequence[np.ndarray], strengths: Sequence[float], prior: Any | None = None,
                keys: Sequence[str] | None = None) -> np.ndarray:
        """Restore a batch. ``keys`` name the faces for seeded restorers (``needs_keys``). If the device runs out of
        memory the batch is halved and retried (down to one crop), and later batches stay at the size that fitted;
        ``last_notes`` says so."""
        self.last_notes = []
        if not len(crops):
            return np.zeros((0, self.restorer.size, self.restorer.size, 3), np.float32)
        return self._restore_fitting(list(crops), list(strengths), prior, keys)

    def _restore_fitting(self, crops: list[np.ndarray], strengths: list[float], prior: Any | None,
                         keys: Sequence[str] | None = None) -> np.ndarray:
        import torch

        n = len(crops)
        limit = self.max_batch or n
        if n > limit:
            parts = [self._restore_fitting(crops[i : i + limit], strengths[i : i + limit], _part(prior, i, i + limit),
                                           _part(keys, i, i + limit))
                     for i in range(0, n, limit)]
            return np.concatenate(parts)
        try:
            return self._restore_batch(crops, strengths, prior, keys)
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
                self._restore_fitting(crops[:half], strengths[:half], _part(prior, 0, half), _part(keys, 0, half)),
                self._restore_fitting(crops[half:], strengths[half:], _part(prior, half, n), _part(keys, half, n)),
            ])

    def summary(self) -> "OutOfMemorySummary | None":
        """For summary.json: only present when memory ran out."""
        if not self.oom_events:
            return None
        return OutOfMemorySummary(events=self.oom_events, batch_size_after=self.max_batch)

    def _restore_batch(self, crops: list[np.ndarray], strengths: list[float], prior: Any | None,
                       keys: Sequence[str] | None = None) -> np.ndarray:
        import torch

        x = _crops_tensor(crops, self.device)  # (N, 3, S, S) RGB [0, 1]
        s = torch.tensor(list(strengths), dtype=torch.float32, device=self.device).view(-1, 1, 1, 1)
        # Strength 0 (a box the 3D prior contradicts, a face the user keeps) pastes the input back: not worth a
        # restorer call, which is most of a CPU run.
        run = [i for i, v in enumerate(strengths) if v > 0.0]
        if not run:
            return tensor_to_crops(x)
        with torch.inference_mode():
            # Precision is the network's own (registry.Execution, applied by its backend), never the runtime's.
            kw: dict[str, Any] = {"prior": _take(prior, run)} if self.restorer.needs_prior else {}
            if getattr(self.restorer, "needs_keys", False):
                kw["keys"] = _take(keys, run)
            if len(run) == len(crops):
                y = self.restorer(x, **kw).float().clamp(0.0, 1.0)
            else:
                y = x.clone()
                y[run] = self.restorer(x[run], **kw).float().clamp(0.0, 1.0)
            out = tensor_to_crops(torch.where(s >= 1.0, y, torch.where(s <= 0.0, x, s * y + (1.0 - s) * x)))
        self.calls += 1
        return out


def _crops_tensor(crops: list[np.ndarray], device: Any) -> Any:
    """``(N, 3, S, S)`` float32 RGB [0, 1]; each crop scaled by its own dtype's maximum. The scheduler gathers faces
    across images, so 8- and 16-bit faces share batches: one ``np.stack`` would make every crop 16-bit and scale
    the 8-bit faces by 1/65535 (near black)."""
    kinds = {c.dtype for c in crops}
    if len(kinds) == 1:
        return crops_to_tensor(np.stack(crops), device)
    x = None
    for dt in sorted(kinds, key=str):
        idx = [i for i, c in enumerate(crops) if c.dtype == dt]
        part = crops_to_tensor(np.stack([crops[i] for i in idx]), device)
        if x is None:
            x = part.new_empty((len(crops), *part.shape[1:]))
        x[idx] = part
    return x


def _take(prior: Any | None, idx: list[int]) -> Any | None:
    """Faces ``idx`` of a per-face prior (a list, tensor or array) or key list, or None."""
    if prior is None:
        return None
    if isinstance(prior, (list, tuple)):
        return [prior[i] for i in idx]
    return prior[idx]


def _part(prior: Any | None, a: int, b: int) -> Any | None:
    """Faces ``a:b`` of a per-face prior (a list, tensor or array), or None."""
    return None if prior is None else prior[a:b]

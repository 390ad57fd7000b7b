"""Plain descriptions shared by the backends (no torch import): model identity, build info (input shapes are
``facerest_cli.models.arch.TensorSpec``, declared by each architecture).

The network itself arrives as a ``facerest_cli.backend.wrap.TensorCall``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ModelId:
    """Which weights a network carries: the cache is keyed by ``weights_sha256`` and grouped by ``name``
    (the weights.toml entry, so that ``facerest weights remove NAME`` can drop its compiled models)."""

    name: str
    arch: str
    weights_sha256: str


@dataclass(frozen=True)
class BuildInfo:
    """How a network was made ready: ``source`` is ``eager`` (torch), ``converted`` or ``cache`` (OpenVINO);
    ``seconds`` covers conversion or cache verification plus compilation; ``cache_dir`` is the entry used."""

    backend: str
    precision: str
    source: str
    seconds: float
    cache_dir: str | None = None
    notes: tuple[str, ...] = ()


def as_tensors(inputs: Sequence[Any]) -> list["torch.Tensor"]:
    """Torch tensors or numpy arrays -> torch tensors (numpy shares memory)."""
    import numpy as np
    import torch

    return [torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x for x in inputs]

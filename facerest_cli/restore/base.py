"""The restorer contract.

A restorer maps a batch of aligned crops to restored crops, both ``(N, 3, S, S)`` float RGB in ``[0, 1]`` on the
restorer's device (see ``facerest_cli.types``). It may take an optional per-face ``prior`` (the 3D prior stage's
output, needed by SGPN). Restorers never see numpy, files or strength: the runtime handles those.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch


@runtime_checkable
class Restorer(Protocol):
    """Optional attributes the runtime honours: ``prior_fields`` (which 3D-prior arrays the call takes) and
    ``needs_keys`` (the call also takes ``keys=``, one stable name per face: ``types.FaceState.key``; seeded
    diffusion restorers draw each face's noise from it)."""

    name: str
    size: int  # crop side S
    template: str  # alignment template name, e.g. "ffhq512"
    needs_prior: bool

    def __call__(self, faces: "torch.Tensor", prior: Any | None = None) -> "torch.Tensor": ...


class Passthrough:
    """``none``: returns its input. Used to test geometry (align -> paste) without a network."""

    name = "none"
    template = "ffhq512"
    needs_prior = False

    def __init__(self, size: int = 512):
        self.size = size

    def __call__(self, faces: "torch.Tensor", prior: Any | None = None) -> "torch.Tensor":
        return faces

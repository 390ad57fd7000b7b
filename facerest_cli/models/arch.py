"""What code knows about an architecture: how to build it and how its official inference calls it.

weights.toml says which files a model has, how its input is normalised and which template it is aligned to; an
``ArchSpec`` says the rest, next to the ``nn.Module`` it describes (as timm's ``PretrainedCfg`` sits next to the
model). ``facerest_cli.registry.build`` combines the two.

Pure Python: nothing here imports torch, so listing or validating architectures stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    import torch
    from torch import nn


def plain_call(net: "nn.Module", *inputs: Any, **options: Any) -> Any:
    """The default call adapter: ``net(*inputs)``."""
    return net(*inputs)


@dataclass(frozen=True)
class TensorSpec:
    """One input of a network call: its example ``shape`` (batch first, batch 1) and which other axes may change
    between calls (``dynamic``: RetinaFace's H and W). Backends trace and convert with it."""

    shape: tuple[int, ...]
    dynamic: tuple[int, ...] = ()
    dtype: str = "float32"

    def example(self, seed: int = 0) -> "torch.Tensor":
        """A deterministic example tensor of ``shape`` in [-1, 1] (tracing needs values, not only shapes)."""
        import torch

        g = torch.Generator().manual_seed(seed)
        return torch.rand(self.shape, generator=g, dtype=getattr(torch, self.dtype)) * 2 - 1

    def key(self) -> dict:
        return {"shape": list(self.shape), "dynamic": list(self.dynamic), "dtype": self.dtype}


def face(size: int) -> TensorSpec:
    """An ``(N, 3, size, size)`` face batch."""
    return TensorSpec((1, 3, size, size))


@dataclass(frozen=True)
class ArchSpec:
    """A torch architecture.

    ``build(**overrides)`` returns the module with the official constructor arguments (weights are loaded strictly
    by ``facerest_cli.weights.loader``). ``call(net, *inputs, **options)`` runs it the way the official inference
    does and returns the output the role expects (a restorer's image, a parser's logits, an embedding...), with
    every input already normalised as the weights.toml entry says; tensors in, tensors out, so a backend can trace
    it. ``options`` names the run-time options ``call`` accepts (e.g. CodeFormer's ``fidelity``); ``meta`` holds
    per-architecture facts a role needs (a parser's face classes, the 3D prior a restorer takes).

    For the backends (``facerest_cli.backend``): ``inputs`` are the call's inputs at batch 1; ``bf16`` says
    whether ``--precision auto`` may run it in bf16 (only where bf16 stays within 2e-2 rel-L2 of fp32 on its
    golden: see backend/calls.py for the measurements); ``fp32_scopes`` names submodules the torch backend keeps
    float32 under bf16 autocast (the codebook restorers' code choice).
    """

    build: Callable[..., "nn.Module"]
    call: Callable[..., Any] = plain_call
    options: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    inputs: tuple[TensorSpec, ...] = ()
    bf16: bool = False
    fp32_scopes: tuple[str, ...] = ()

    kind = "torch"


@dataclass(frozen=True)
class ExternalArch:
    """A model that is not a torch module: an ONNX graph run by its own runtime (OpenCV, onnxruntime), or data
    files (a morphable model, a config). ``build`` hands its role the verified files; the role's code runs them."""

    runtime: str  # "onnx" | "data"
    meta: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    kind = "external"


ONNX = ExternalArch("onnx")
# Data-file entries (3DDFA configs, morphable models): their stage reads the files itself.
DATA = ExternalArch("data")

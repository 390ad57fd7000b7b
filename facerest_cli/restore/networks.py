"""Network restorers: a built model (``facerest_cli.registry.build``) behind the ``Restorer`` contract.

The restorer converts the pipeline's RGB ``[0, 1]`` crops to the network's input with the normalisation its
weights.toml entry states, runs the architecture's call adapter (the official inference call, ``models.arch``) and
converts back. One difference from the official inference matters to archives: noise is deterministic (GFPGAN's
stored noise buffers), so the same input always gives the same output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from facerest_cli.config import RestoreConfig
from facerest_cli.errors import UsageError

if TYPE_CHECKING:
    import torch

    from facerest_cli.registry import Execution, Model
    from facerest_cli.weights.cache import WeightsStore


class NetworkRestorer:
    """A loaded network as a ``Restorer``: ``(N, 3, S, S)`` RGB [0, 1] in, same out, on the model's device.

    ``prior_fields`` (from the architecture's ``meta["prior"]``) names the 3D-prior arrays the network takes after
    the face (e.g. SGPN: the rendered face and its 257 coefficients); the runtime passes them per face.
    """

    def __init__(self, model: "Model", cfg: RestoreConfig, size: int | None = None):
        import torch

        self.model = model
        self.name = model.name
        self.size = size or model.spec.size or 512  # ``size``: a test's or bench's smaller variant of the net
        self.template = model.spec.template or "ffhq512"
        self.prior_fields: tuple[str, ...] = tuple(model.spec.arch_spec.meta.get("prior", ()))
        self.needs_prior = bool(self.prior_fields)
        self.device = torch.device(model.device)
        # A backend network lays itself out (facerest_cli.backend); the plain eager one uses NHWC on CUDA.
        self._channels_last = cfg.channels_last and self.device.type == "cuda" and model.runner is None
        if self._channels_last:
            try:
                model.net = model.net.to(memory_format=torch.channels_last)
            except RuntimeError:
                # GPEN/SGPN keep the official 5-D modulated weights, which have no channels_last form; a
                # channels_last input still propagates the format through their 4-D convolutions.
                pass
        self._forward = torch.compile(self._run, dynamic=False) if cfg.compile else self._run

    def _run(self, x: "torch.Tensor", *prior: "torch.Tensor") -> "torch.Tensor":
        import torch

        if self.device.type == "cuda" and self.model.runner is None:
            # fp32 means fp32: cuDNN would otherwise run convolutions in TF32 and drift from the official
            # outputs. Scoped to this call, so no process-wide flag changes.
            with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
                return self.model(x, *prior)
        return self.model(x, *prior)

    def prior_tensors(self, prior: Sequence[Any] | None, like: "torch.Tensor") -> list["torch.Tensor"]:
        """Per-face prior objects -> one batched tensor per ``prior_fields`` entry (images as NCHW RGB [0, 1])."""
        import numpy as np
        import torch

        if not self.prior_fields:
            return []
        if prior is None or any(p is None for p in prior):
            raise UsageError(f"the {self.name} restorer needs the 3D prior stage ({', '.join(self.prior_fields)})")
        out = []
        for f in self.prior_fields:
            a = torch.from_numpy(np.stack([getattr(p, f) for p in prior])).to(like.device)
            # (N, S, S, 3) RGB [0, 1] images -> NCHW, normalised as the face is (the network sees both alike).
            out.append(self.model.normalise(a.permute(0, 3, 1, 2)) if a.ndim == 4 else a)
        return out

    def __call__(self, faces: "torch.Tensor", prior: Sequence[Any] | None = None) -> "torch.Tensor":
        import torch

        if self.device.type == "cpu" and getattr(self.model.runner, "backend", "torch") == "torch":
            # On CPU each face is its own network call (OpenVINO already runs one request per face, in parallel
            # streams), in one memory layout. oneDNN picks its kernels (and so the
            # order of float sums) by tensor shape and layout: GFPGAN gives a face values ~2e-6 apart in a batch
            # of 1, 2 or 8, or from an NHWC- rather than NCHW-strided input, enough to move an output pixel by one
            # level. A contiguous single face per call makes a face's output independent of which faces share its
            # batch (and of their bit depths), so every engine (the local scheduler, Ray actors batching across
            # other images) writes the same bytes; two CPU cores gain nothing from batching anyway (BENCHMARKS.md:
            # batch 1 is the fastest).
            return torch.cat([self._one(faces[i : i + 1].contiguous(), None if prior is None else prior[i : i + 1])
                              for i in range(faces.shape[0])])
        return self._one(faces, prior)

    def _one(self, faces: "torch.Tensor", prior: Sequence[Any] | None) -> "torch.Tensor":
        import torch

        x = self.model.normalise(faces)
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self._forward(x, *self.prior_tensors(prior, x))
        return self.model.denormalise(y.float()).clamp_(0.0, 1.0)


def build_network_restorer(cfg: RestoreConfig, store: "WeightsStore", device: str,
                           execution: "Execution | None" = None) -> NetworkRestorer:
    from facerest_cli.registry import build

    arch = store.registry.get(cfg.restorer)
    options = {"fidelity": cfg.fidelity} if "fidelity" in _arch_options(arch.arch) else {}
    model = build(cfg.restorer, store, device, execution=execution, role="restorer", **options)
    return NetworkRestorer(model, cfg)


def _arch_options(arch: str) -> tuple[str, ...]:
    from facerest_cli.models.registry import arch_spec

    spec = arch_spec(arch)
    return getattr(spec, "options", ())

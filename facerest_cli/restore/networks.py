"""Network restorers: a checkpoint-exact module behind the ``Restorer`` contract.

Every supported network takes and returns RGB in ``[-1, 1]`` at 512x512 (the FFHQ template); the adapter converts
from and to the pipeline's RGB ``[0, 1]`` and calls the network the way its official inference code does, with
one difference that matters to archives: noise is deterministic (GFPGAN's stored noise buffers), so the same
input always gives the same output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from facerest_cli.config import RestoreConfig
from facerest_cli.errors import UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from facerest_cli.weights.cache import WeightsStore

Call = Callable[["nn.Module", "torch.Tensor", Any], "torch.Tensor"]


def _gfpgan(net, x, prior, cfg: RestoreConfig):
    return net(x, return_rgb=False, randomize_noise=False)[0]


def _codeformer(net, x, prior, cfg: RestoreConfig):
    return net(x, w=cfg.fidelity, adain=True)[0]


def _gpen(net, x, prior, cfg: RestoreConfig):
    return net(x)[0]


def _restoreformer(net, x, prior, cfg: RestoreConfig):
    return net.restore(x)


def _sgpn(net, x, prior, cfg: RestoreConfig):
    import numpy as np
    import torch

    if prior is None or any(p is None for p in prior):
        raise UsageError("the sgpn restorer needs the 3D prior stage (its rendered face and 257 coefficients)")
    render = torch.from_numpy(np.stack([p.render for p in prior])).to(x.device)  # (N, S, S, 3) RGB [0, 1]
    render = render.permute(0, 3, 1, 2).to(x.dtype) * 2 - 1
    coeff = torch.from_numpy(np.stack([p.coeff for p in prior])).to(x.device, x.dtype)
    return net(im_LR=x, im_D3D=render, coeff_D3D=coeff)


CALLS: dict[str, Callable] = {
    "gfpgan_v1_clean": _gfpgan,
    "codeformer": _codeformer,
    "gpen_bfr_512": _gpen,
    "restoreformer_pp": _restoreformer,
    "sgpn": _sgpn,
}


class NetworkRestorer:
    """A loaded network as a ``Restorer``: ``(N, 3, S, S)`` RGB [0, 1] in, same out, on ``device``."""

    template = "ffhq512"

    def __init__(self, name: str, net: "nn.Module", arch: str, cfg: RestoreConfig, device: str, size: int = 512):
        import torch

        self.name = name
        self.size = size
        self.needs_prior = arch == "sgpn"
        self._call = CALLS[arch]
        self._cfg = cfg
        self.device = torch.device(device)
        net = net.to(self.device).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self._channels_last = cfg.channels_last and self.device.type == "cuda"
        if self._channels_last:
            try:
                net = net.to(memory_format=torch.channels_last)
            except RuntimeError:
                # GPEN/SGPN keep the official 5-D modulated weights, which have no channels_last form; a
                # channels_last input still propagates the format through their 4-D convolutions.
                pass
        if self.device.type == "cuda" and cfg.precision == "fp32":
            # fp32 means fp32: cuDNN would otherwise run convolutions in TF32 and drift from the official outputs.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.net = net
        self._forward = torch.compile(self._run, dynamic=False) if cfg.compile else self._run

    def _run(self, x: "torch.Tensor", prior: Any) -> "torch.Tensor":
        return self._call(self.net, x, prior, self._cfg)

    def __call__(self, faces: "torch.Tensor", prior: Any | None = None) -> "torch.Tensor":
        import torch

        x = faces * 2.0 - 1.0
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self._forward(x, prior)
        return ((y.float() + 1.0) * 0.5).clamp_(0.0, 1.0)


def build_network_restorer(cfg: RestoreConfig, store: "WeightsStore", device: str) -> NetworkRestorer:
    from facerest_cli.weights.loader import load_model

    entry = store.registry.get(cfg.restorer)
    if entry.role != "restorer" or entry.arch not in CALLS:
        raise UsageError(f"{cfg.restorer!r} is not a restorer (weights.toml role {entry.role!r}, arch {entry.arch!r})")
    net = load_model(entry, store.ensure(cfg.restorer))
    return NetworkRestorer(cfg.restorer, net, entry.arch, cfg, device, size=entry.input.size or 512)

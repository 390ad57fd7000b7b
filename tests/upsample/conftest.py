"""Fixtures for the upsampler tests: the x2plus stand-in (make_checkpoint weights, seed 0) loaded through the real
loader, with a memo so golden cases that feed the very same tile twice (tiled output and outscale 3.5, the
pre-padded tiles that do not touch the pad) run the network once."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from tests.models.golden import write_official_checkpoint


class MemoNet:
    """Wraps ``UpsamplerNet``: same ``forward``/``run``/``scale``/``align``; identical inputs are computed once."""

    def __init__(self, net):
        self.net = net
        self.scale, self.align = net.scale, net.align
        self.cache: dict[str, torch.Tensor] = {}
        self.calls = 0  # network calls actually made
        self.tiles = 0  # tiles (batch items) actually computed

    def _key(self, t: torch.Tensor) -> str:
        a = t.detach().cpu().contiguous().numpy()
        return f"{a.shape}:{hashlib.sha256(a.tobytes()).hexdigest()}"

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        k = self._key(t)
        if k not in self.cache:
            self.calls += 1
            self.tiles += t.shape[0]
            self.cache[k] = self.net.forward(t)
        return self.cache[k].clone()

    __call__ = forward

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.forward(torch.from_numpy(np.ascontiguousarray(x))).numpy()


@pytest.fixture(scope="session")
def x2plus(tmp_path_factory):
    from facerest_cli.upsample.models import UpsamplerInfo, UpsamplerNet, build_upsampler_module
    from facerest_cli.weights.registry import load_registry

    entry = load_registry().get("realesrgan-x2")
    ckpt = write_official_checkpoint("realesrgan_x2plus", tmp_path_factory.mktemp("x2plus") / "RealESRGAN_x2plus.pth")
    module = build_upsampler_module(entry, ckpt)
    return MemoNet(UpsamplerNet(module, UpsamplerInfo("realesrgan-x2", 2, 2, None)))


@pytest.fixture(scope="session")
def tiled_golden():
    import json

    from tests.conftest import shared_file

    m = json.loads(shared_file("checkpoint-formats", "realesrgan_x2plus.json").read_text())
    g = np.load(shared_file("checkpoint-formats", m["enhance_golden"]["golden"]))
    return g


def uint8_close(out: np.ndarray, ref: np.ndarray) -> tuple[int, float]:
    """(max |diff|, fraction of values that differ)."""
    assert out.shape == ref.shape and out.dtype == ref.dtype, (out.shape, out.dtype, ref.shape, ref.dtype)
    d = np.abs(out.astype(np.int32) - ref.astype(np.int32))
    return int(d.max()), float((d > 0).mean())


class NearestNet:
    """A cheap network with the upsampler interface: nearest-neighbour upscaling (exactly local), so tiled output
    must equal untiled output; counts calls and the largest batch."""

    def __init__(self, scale: int = 2, align: int = 1, fn=None):
        self.scale, self.align = scale, align
        self.calls = 0
        self.max_batch = 0
        self.fn = fn

    def run(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.max_batch = max(self.max_batch, len(x))
        y = x.repeat(self.scale, axis=2).repeat(self.scale, axis=3)
        return self.fn(y) if self.fn is not None else y

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(t.numpy()))

    __call__ = forward


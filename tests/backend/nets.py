"""The networks the backend tests convert: make_checkpoint weights through the real loader, golden inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# network id -> (golden manifest, weights.toml entry, golden input keys in call order)
CHECKPOINT_NETS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "gfpgan-1.4": ("gfpgan_v1.4", "gfpgan-1.4", ("input",)),
    "codeformer": ("codeformer", "codeformer", ("input",)),
    "gpen-bfr-512": ("gpen_bfr_512", "gpen-bfr-512", ("input",)),
    "restoreformer-pp": ("restoreformer_pp", "restoreformer-pp", ("input",)),
    "sgpn": ("sgpn", "sgpn", ("input", "input_d3d", "input_coeff")),
    "bisenet": ("parsing_bisenet", "bisenet", ("input",)),
    "parsenet": ("parsing_parsenet", "parsenet", ("input",)),
    "retinaface-r50": ("retinaface_resnet50", "retinaface-r50", ("input",)),
    "retinaface-mnet": ("retinaface_mobilenet0.25", "retinaface-mnet", ("input",)),
    "3ddfa-mb1": ("3ddfa_v2_mb1_120x120", "3ddfa-mb1", ("input",)),
    "d3dfr": ("deep3dfacerecon_resnet50", "d3dfr", ("input",)),
    "arcface-iresnet50": ("arcface_iresnet50", "arcface-iresnet50", ("input",)),
}
RESTORERS = ("gfpgan-1.4", "codeformer", "gpen-bfr-512", "restoreformer-pp", "sgpn")


@dataclass
class LoadedNet:
    name: str
    arch: str
    net: torch.nn.Module
    inputs: tuple[torch.Tensor, ...]
    sha256: str


def load_checkpoint_net(name: str, folder: Path) -> LoadedNet:
    """make_checkpoint weights (seed 0) in the official file layout, loaded strictly by the real loader."""
    from facerest_cli.weights.download import sha256_file
    from facerest_cli.weights.loader import load_model
    from facerest_cli.weights.registry import load_registry
    from tests.models.golden import golden, manifest, write_official_checkpoint

    manifest_name, entry_name, keys = CHECKPOINT_NETS[name]
    entry = load_registry().get(entry_name)
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = write_official_checkpoint(manifest_name, folder / manifest(manifest_name)["checkpoint_file"].split(" ")[0])
    net = load_model(entry, ckpt)
    g = golden(manifest_name)
    inputs = tuple(torch.from_numpy(np.ascontiguousarray(g[k])) for k in keys)
    sha = sha256_file(ckpt)
    ckpt.unlink()  # 100-380 MB each; the loaded module is all the tests need
    return LoadedNet(name, entry.arch, net, inputs, sha)


def mobilefacenet_net() -> LoadedNet:
    """The real arcface-mobilefacenet weights from ../shared on five real aligned 112 crops."""
    import cv2

    from facerest_cli.weights.download import sha256_file
    from facerest_cli.weights.loader import load_model
    from facerest_cli.weights.registry import load_registry
    from tests.conftest import shared_file, weights_file

    entry = load_registry().get("arcface-mobilefacenet")
    path = weights_file("recognition", "arcface_mobilefacenet.pth")
    net = load_model(entry, path)
    folder = shared_file("images", "gfpgan", "cropped_faces")
    crops = [cv2.resize(cv2.imread(str(p)), (112, 112), interpolation=cv2.INTER_AREA) for p in sorted(folder.glob("*.png"))[:4]]
    x = np.stack(crops)[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0
    return LoadedNet("arcface-mobilefacenet", entry.arch, net, (torch.from_numpy(np.ascontiguousarray(x)),), sha256_file(path))


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    assert a.shape == b.shape, f"{tuple(a.shape)} != {tuple(b.shape)}"
    return float((a - b).norm() / b.norm())


def psnr_crop(restored: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR in dB (peak 1) of two restored crops as the runtime keeps them: [-1, 1] -> [0, 1], clamped."""
    a = ((restored.double() + 1) / 2).clamp(0, 1)
    b = ((ref.double() + 1) / 2).clamp(0, 1)
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def build(loaded, backend: str, precision: str, caps, cache=None, **kw):
    """``build_network`` for a ``tests.backend.nets.LoadedNet`` with its architecture's call adapter."""
    from facerest_cli.backend.api import BackendOptions, build_network
    from facerest_cli.backend.calls import arch_call
    from facerest_cli.backend.network import ModelId
    from facerest_cli.backend.wrap import TensorCall

    ac = kw.pop("spec", None) or arch_call(loaded.arch)
    call = kw.pop("call", None) or TensorCall(loaded.net, ac.fn, **ac.options)
    opts = BackendOptions(backend, precision, "cpu", caps, **kw)
    return build_network(call, ac, ModelId(loaded.name, loaded.arch, loaded.sha256), opts, cache=cache)

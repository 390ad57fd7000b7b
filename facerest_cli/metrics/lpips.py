"""LPIPS v0.1 (vgg, alex): build the network from its two verified files and score image pairs.

``load_lpips(store, "lpips-vgg")`` builds torchvision's VGG-16 (``arch`` of the weights.toml entry), loads the
ImageNet file strictly into the whole torchvision module -- as ``torchvision.models.vgg16(weights=...)`` does,
so a truncated or foreign file fails -- keeps ``features`` (the classifier is dropped after the load, freeing
~0.5 GB), and loads the LPIPS linear layers strictly into ``LPIPSHead``.

Images: ``(H, W, 3)`` uint8 BGR as decoded; ``to_lpips_input`` turns a batch into ``(B, 3, H, W)`` float32 RGB in
``[-1, 1]`` (``x / 255 * 2 - 1``), the range LPIPS' ``normalize=False`` expects. Scores are computed at the
images' own size (the paper tables' 512x512 for aligned faces); lower is more similar.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch

    from facerest_cli.models.lpips import LPIPS
    from facerest_cli.weights.cache import WeightsStore
    from facerest_cli.weights.registry import WeightsEntry

LPIPS_NETS = {"lpips-vgg": "vgg", "lpips-alex": "alex"}


def build_lpips(entry: "WeightsEntry", backbone_path, head_path) -> "LPIPS":
    """The LPIPS network from the backbone file (``entry.files[0]``) and the linear-layer file (``files[1]``),
    both loaded strictly through ``facerest_cli.weights.loader``; eval mode, float32, on the CPU."""
    from facerest_cli.errors import WeightsError
    from facerest_cli.models import alexnet as alex_mod
    from facerest_cli.models import vgg as vgg_mod
    from facerest_cli.models.lpips import LPIPS, lpips_alex_head, lpips_vgg_head
    from facerest_cli.models.registry import build_arch
    from facerest_cli.weights.loader import load_weights_into

    if entry.arch == "vgg16":
        slices, head = vgg_mod.LPIPS_SLICES, lpips_vgg_head()
    elif entry.arch == "alexnet":
        slices, head = alex_mod.LPIPS_SLICES, lpips_alex_head()
    else:
        raise WeightsError(f"{entry.name}: arch {entry.arch!r} is not an LPIPS backbone (vgg16 or alexnet)")
    if len(entry.files) != 2:
        raise WeightsError(f"{entry.name}: expected 2 files (backbone, linear layers), weights.toml lists "
                           f"{len(entry.files)}")
    backbone = build_arch(entry.arch, init_weights=False)
    load_weights_into(backbone, backbone_path, entry.files[0])
    load_weights_into(head, head_path, entry.files[1])
    net = LPIPS(backbone.features, slices, head)
    del backbone  # the classifier is unused by LPIPS (as in the official code, which keeps only .features)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def load_lpips(store: "WeightsStore", name: str, device: str = "cpu") -> "LPIPS":
    """Build ``lpips-vgg`` / ``lpips-alex`` from installed files (never downloads: ``locate`` only)."""
    from facerest_cli.errors import WeightsMissingError

    entry = store.registry.get(name)
    paths = []
    for f in entry.files:
        p = store.locate(name, f.name)
        if p is None:
            raise WeightsMissingError(f"{name}: {f.name} is not installed; run: facerest weights fetch {name}")
        paths.append(p)
    return build_lpips(entry, paths[0], paths[1]).to(device)


def to_lpips_input(images_bgr: Sequence[np.ndarray], device: str = "cpu") -> "torch.Tensor":
    """uint8 BGR ``(H, W, 3)`` images of one size -> ``(B, 3, H, W)`` float32 RGB in ``[-1, 1]``."""
    import torch

    a = np.stack([np.asarray(im)[:, :, 2::-1] for im in images_bgr]).astype(np.float32) / np.float32(255.0)
    x = torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).to(device)
    return x * 2 - 1


def lpips_distance(net: "LPIPS", restored_bgr: Sequence[np.ndarray], reference_bgr: Sequence[np.ndarray]) -> np.ndarray:
    """``(B,)`` float64 LPIPS of each restored image against its reference (same sizes pairwise)."""
    import torch

    dev = next(net.parameters()).device
    with torch.inference_mode():
        d, _ = net(to_lpips_input(restored_bgr, str(dev)), to_lpips_input(reference_bgr, str(dev)))
    return d.double().cpu().numpy()

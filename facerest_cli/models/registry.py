"""Arch name -> builder. The ``arch`` field of a weights.toml entry names one of these.

Builders live next to their architecture (``facerest_cli/models/<family>.py``) and carry the official
constructor arguments, like torchvision's ``resnet50()``. The table holds strings so that listing or validating
archs imports nothing heavy; ``build_arch`` imports the one module it needs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from facerest_cli.errors import WeightsError

if TYPE_CHECKING:
    from torch import nn

# torch architectures: arch name -> "module:builder"
TORCH_ARCHS: dict[str, str] = {
    # restorers
    "gfpgan_v1_clean": "facerest_cli.models.gfpgan:gfpgan_v1_clean",
    "codeformer": "facerest_cli.models.codeformer:codeformer",
    "gpen_bfr_512": "facerest_cli.models.gpen:gpen_bfr_512",
    "restoreformer_pp": "facerest_cli.models.restoreformer:restoreformer_pp",
    "sgpn": "facerest_cli.models.sgpn:sgpn",
    # face parsing
    "bisenet": "facerest_cli.models.bisenet:bisenet",
    "parsenet": "facerest_cli.models.parsenet:parsenet",
    # detectors
    "retinaface_mnet": "facerest_cli.models.retinaface:retinaface_mnet",
    "retinaface_r50": "facerest_cli.models.retinaface:retinaface_r50",
    "retinaface_mnet_1mb": "facerest_cli.models.retinaface:retinaface_mnet_1mb",
    # 3D prior regressors
    "d3dfr_resnet50": "facerest_cli.models.d3dfr:d3dfr_resnet50",
    "tddfa_mb1": "facerest_cli.models.mobilenet_v1:tddfa_mb1",
    "tddfa_mb05": "facerest_cli.models.mobilenet_v1:tddfa_mb05",
    # recognizers
    "arcface_iresnet50": "facerest_cli.models.iresnet:iresnet50",
    "arcface_iresnet100": "facerest_cli.models.iresnet:iresnet100",
    "mobilefacenet": "facerest_cli.models.mobilefacenet:mobilefacenet",
}

# Archs that are not torch modules: ONNX graphs run by OpenCV / onnxruntime, and data files (morphable models).
ONNX_ARCHS = frozenset({"yunet", "scrfd", "arcface_onnx"})
DATA_ARCHS = frozenset({"tddfa_config", "bfm_sparse68", "bfm_noneck_v3", "bfm09"})

ALL_ARCHS = frozenset(TORCH_ARCHS) | ONNX_ARCHS | DATA_ARCHS


def build_arch(name: str, **overrides: Any) -> "nn.Module":
    """Build a torch architecture by name with its official constructor arguments (``overrides`` replace some)."""
    try:
        target = TORCH_ARCHS[name]
    except KeyError:
        raise WeightsError(f"unknown torch architecture {name!r}; known: {', '.join(sorted(TORCH_ARCHS))}") from None
    module_name, fn_name = target.split(":")
    return getattr(import_module(module_name), fn_name)(**overrides)

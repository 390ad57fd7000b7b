"""Arch name -> its ``ArchSpec``. The ``arch`` field of a weights.toml entry names one of these.

An explicit table of strings (no import side effects, no decorators registering at import time: a stale import
once broke every BasicSR user): listing or validating archs imports nothing heavy, and ``arch_spec`` imports the one
module it needs. A weights.toml entry may also name an architecture outside facerest as ``"package.module:attr"``
(a user's model, or a test's toy restorer): then that module is the whole registration.

Each value is ``"module:attr"``; ``attr`` is an ``ArchSpec`` / ``ExternalArch``, or a plain builder function (its
call adapter is then ``net(*inputs)``).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from facerest_cli.errors import WeightsError
from facerest_cli.models.arch import ArchSpec, ExternalArch

if TYPE_CHECKING:
    from torch import nn

ARCHS: dict[str, str] = {
    # restorers
    "gfpgan_v1_clean": "facerest_cli.models.gfpgan:GFPGAN_V1_CLEAN",
    "codeformer": "facerest_cli.models.codeformer:CODEFORMER",
    "gpen_bfr_512": "facerest_cli.models.gpen:GPEN_BFR_512",
    "restoreformer_pp": "facerest_cli.models.restoreformer:RESTOREFORMER_PP",
    "sgpn": "facerest_cli.models.sgpn:SGPN",
    "difface_unet": "facerest_cli.models.iddpm_unet:DIFFACE_UNET",
    "tdiffusion_unet": "facerest_cli.models.iddpm_unet:TDIFFUSION_UNET",
    "difface_swinir": "facerest_cli.models.swinir:difface_swinir",
    # face parsing
    "bisenet": "facerest_cli.models.bisenet:BISENET",
    "parsenet": "facerest_cli.models.parsenet:PARSENET",
    # detectors (torch RetinaFace; ONNX ones through OpenCV / insightface)
    "retinaface_mnet": "facerest_cli.models.retinaface:RETINAFACE_MNET",
    "retinaface_r50": "facerest_cli.models.retinaface:RETINAFACE_R50",
    "retinaface_mnet_1mb": "facerest_cli.models.retinaface:RETINAFACE_MNET_1MB",
    "yunet": "facerest_cli.models.arch:ONNX",
    "scrfd": "facerest_cli.models.arch:ONNX",
    # 3D prior regressors
    "d3dfr_resnet50": "facerest_cli.models.d3dfr:D3DFR_RESNET50",
    "tddfa_mb1": "facerest_cli.models.mobilenet_v1:TDDFA_MB1",
    "tddfa_mb05": "facerest_cli.models.mobilenet_v1:TDDFA_MB05",
    # recognizers
    "arcface_iresnet50": "facerest_cli.models.iresnet:IRESNET50",
    "arcface_iresnet100": "facerest_cli.models.iresnet:IRESNET100",
    "mobilefacenet": "facerest_cli.models.mobilefacenet:MOBILEFACENET",
    "arcface_onnx": "facerest_cli.models.arch:ONNX",
    # background upsamplers (Real-ESRGAN)
    "realesrgan_x2plus": "facerest_cli.models.rrdbnet:realesrgan_x2plus",
    "realesrgan_x4plus": "facerest_cli.models.rrdbnet:realesrgan_x4plus",
    "realesr_general_x4v3": "facerest_cli.models.srvgg:realesr_general_x4v3",
    # quality metrics (LPIPS backbones, FID Inception)
    "vgg16": "facerest_cli.models.vgg:vgg16",
    "alexnet": "facerest_cli.models.alexnet:alexnet",
    "fid_inception_v3": "facerest_cli.models.inception:fid_inception_v3",
    # data files (configs, morphable models, metric parameters): read by their stage, never built as networks
    "tddfa_config": "facerest_cli.models.arch:DATA",
    "bfm_sparse68": "facerest_cli.models.arch:DATA",
    "bfm_noneck_v3": "facerest_cli.models.arch:DATA",
    "bfm09": "facerest_cli.models.arch:DATA",
    "niqe_params": "facerest_cli.models.arch:DATA",
}


def is_known(name: str) -> bool:
    """True for a built-in arch name or a ``module:attr`` reference (not imported here)."""
    return name in ARCHS or (":" in name and all(name.split(":", 1)))


def arch_spec(name: str) -> ArchSpec | ExternalArch:
    """The spec behind an arch name (or a ``module:attr`` reference)."""
    target = ARCHS.get(name, name if ":" in name else None)
    if target is None:
        raise WeightsError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHS))}, or 'package.module:attr'")
    module_name, attr = target.split(":", 1)
    try:
        obj: Any = getattr(import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise WeightsError(f"architecture {name!r}: cannot import {target} ({e})") from None
    if isinstance(obj, (ArchSpec, ExternalArch)):
        return obj
    if callable(obj):
        return ArchSpec(build=obj)
    raise WeightsError(f"architecture {name!r}: {target} is a {type(obj).__name__}, not an ArchSpec or builder")


def build_arch(name: str, **overrides: Any) -> "nn.Module":
    """Build a torch architecture by name with its official constructor arguments (``overrides`` replace some)."""
    spec = arch_spec(name)
    if not isinstance(spec, ArchSpec):
        raise WeightsError(f"architecture {name!r} is not a torch module")
    return spec.build(**overrides)

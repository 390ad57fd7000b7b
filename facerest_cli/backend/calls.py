"""The backends' view of an architecture: its call adapter, inputs and precision policy, from its ``ArchSpec``.

The adapters themselves live with their architectures (``facerest_cli.models.*``, ``ArchSpec.call``): the
official inference call, tensors in and tensors out (what ``TensorCall`` and OpenVINO conversion need). Ranges
are those of the network, not the pipeline's [0, 1]: the stage that owns a network normalises (with its
weights.toml entry) before calling it. The table below is what those specs declare.

========================  =====================================================  ==============================
arch                      inputs (batch N)                                       outputs
========================  =====================================================  ==============================
gfpgan_v1_clean           x (N,3,512,512) RGB [-1,1]                             (N,3,512,512) RGB ~[-1,1]
codeformer (w option)     x (N,3,512,512) RGB [-1,1]                             (N,3,512,512) RGB ~[-1,1]
gpen_bfr_512              x (N,3,512,512) RGB [-1,1]                             (N,3,512,512) RGB ~[-1,1]
restoreformer_pp          x (N,3,512,512) RGB [-1,1]                             (N,3,512,512) RGB ~[-1,1]
sgpn                      x, render (N,3,512,512) RGB [-1,1]; coeff (N,257)      (N,3,512,512) RGB ~[-1,1]
bisenet                   x (N,3,512,512) RGB, ImageNet mean/std                 logits (N,19,512,512)
parsenet                  x (N,3,512,512) RGB [-1,1]                             logits (N,19,512,512)
retinaface_*              x (1,3,H,W) BGR minus (104,117,123), H and W dynamic   loc (1,P,4), conf (1,P,2) softmax,
                                                                                 landms (1,P,10)
tddfa_mb1 / tddfa_mb05    x (N,3,120,120) BGR, (v - 127.5) / 128                 params (N,62), normalised
d3dfr_resnet50            x (N,3,224,224) RGB [0,1]                              coeffs (N,257)
arcface_iresnet50/100     x (N,3,112,112) RGB [-1,1]                             embedding (N,512), not normalised
mobilefacenet             x (N,3,112,112) RGB [-1,1]                             embedding (N,128), not normalised
========================  =====================================================  ==============================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from facerest_cli.models.arch import TensorSpec


@dataclass(frozen=True)
class ArchCall:
    """One architecture's adapter ``fn``, its inputs at batch 1, the adapter ``options``, and its precision policy.

    ``auto_bf16`` (``ArchSpec.bf16``): whether ``--precision auto`` may run it in bf16 on a CPU with bf16 units.
    True for the image-to-image networks whose bf16 output stays within 2e-2 rel-L2 of fp32 (GFPGAN, GPEN, SGPN,
    the parsers). False for:
      * the codebook restorers (CodeFormer, RestoreFormer++): a bf16 encoder flips nearest-code choices; measured
        on the goldens with make_checkpoint weights, rel-L2 0.13 / 0.52 (torch autocast) and 0.21 / 0.72
        (OpenVINO) against fp32, PSNR 20-28 dB. Explicit ``--precision bf16`` still runs them, with a note;
      * the measurement networks (detectors, 3D regressors, recognizers): their outputs are compared with
        thresholds calibrated in fp32 (alignment landmarks, identity cosine, shape distance), they cost little
        next to a restorer, and RetinaFace's bf16 scores drift by 3-5% rel-L2.
    ``fp32_scopes``: submodules of ``net`` that the torch backend keeps float32 under bf16 autocast (the code
    choice of the codebook restorers: CodeFormer's rel-L2 drops from 0.135 to 0.052, PSNR 28 -> 37 dB).
    OpenVINO has no equivalent that holds: its ``DisablePrecisionConversion`` node mark (IR rt_info) keeps
    convolutions float32 but is dropped when the CPU plugin turns MatMul into FullyConnected or fuses
    eltwise chains, so the same scopes changed CodeFormer's OpenVINO bf16 error from 0.209 to 0.226; not used.
    """

    fn: Callable[..., Any]
    inputs: tuple[TensorSpec, ...]
    options: dict = field(default_factory=dict)
    auto_bf16: bool = False
    fp32_scopes: tuple[str, ...] = ()


def arch_call(arch: str, options: dict | None = None) -> ArchCall:
    """The backends' description of ``arch`` (``options``: the adapter's run-time options, e.g. CodeFormer's
    ``fidelity``)."""
    from facerest_cli.errors import UsageError
    from facerest_cli.models.arch import ArchSpec
    from facerest_cli.models.registry import arch_spec

    spec = arch_spec(arch)
    if not isinstance(spec, ArchSpec) or not spec.inputs:
        raise UsageError(f"architecture {arch!r} declares no backend inputs (ArchSpec.inputs)")
    return ArchCall(spec.call, spec.inputs, dict(options or {}), spec.bf16, spec.fp32_scopes)


def auto_bf16_archs() -> set[str]:
    """Every architecture ``--precision auto`` may run in bf16."""
    from facerest_cli.models.arch import ArchSpec
    from facerest_cli.models.registry import ARCHS, arch_spec

    return {a for a in ARCHS if isinstance(arch_spec(a), ArchSpec) and arch_spec(a).bf16}

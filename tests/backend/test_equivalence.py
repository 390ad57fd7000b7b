"""Every network the run executes on CPU, through both backends, on its golden input with make_checkpoint weights
(arcface-mobilefacenet: the real ../shared weights on real crops).

- OpenVINO fp32 matches torch fp32 within 1e-4 rel-L2 (each output);
- the torch backend in fp32 is the golden call (within the golden's own tolerance);
- bf16 (torch autocast and OpenVINO's bf16 hint) stays within 2e-2 rel-L2 of fp32, and a restored crop within
  PSNR >= 35 dB of the fp32 crop, for every network that ``--precision auto`` runs in bf16 (GFPGAN, GPEN, SGPN,
  BiSeNet, ParseNet; why the others stay fp32, with their measured bf16 errors: ``ArchCall`` in backend/calls.py).
Each network is converted once into the session cache; its outputs are computed once and shared by the checks.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from tests.backend.nets import CHECKPOINT_NETS, RESTORERS, build, load_checkpoint_net, psnr_crop, rel_l2

# Golden output keys that our adapter's outputs correspond to, in order (None: the adapter's call differs from the
# golden's, e.g. BiSeNet/ParseNet ``parse`` is ``forward(x)[0]`` only).
GOLDEN_OUTPUTS = {
    "gfpgan-1.4": ("output",), "codeformer": ("output",), "gpen-bfr-512": ("output",),
    "restoreformer-pp": ("output",), "sgpn": ("output",), "bisenet": ("logits",), "parsenet": ("logits",),
    "retinaface-r50": ("loc", "conf", "landms"), "retinaface-mnet": ("loc", "conf", "landms"),
    "3ddfa-mb1": ("param",), "d3dfr": ("coeffs",), "arcface-iresnet50": ("embedding",),
}
# Slow: the five restorers and the two 512x512 parsers (conversion 10-30 s each on 2 idle cores).
SLOW = set(RESTORERS) | {"bisenet", "parsenet", "retinaface-r50", "d3dfr"}
NETS = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CHECKPOINT_NETS] + ["arcface-mobilefacenet"]
# torch bf16 last: it sets the fp32 scopes on the module (harmless to the other runs, but they see it untouched)
CONFIGS = (("torch", "fp32"), ("openvino", "fp32"), ("openvino", "bf16"), ("torch", "bf16"))


@pytest.fixture(scope="module")
def outputs(session_cache, caps, tmp_path_factory, request):
    """name -> {(backend, precision): tuple of float32 outputs}, computed on first use, networks freed after."""
    done: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in done:
            if name == "arcface-mobilefacenet":
                loaded = request.getfixturevalue("mobilefacenet")
            else:
                loaded = load_checkpoint_net(name, tmp_path_factory.mktemp(name))
            res = {}
            for backend, precision in CONFIGS if _auto_bf16(name) else CONFIGS[:2]:
                net = build(loaded, backend, precision, caps, session_cache)
                assert net.precision == precision and net.backend == backend
                out = net(*loaded.inputs)
                res[(backend, precision)] = out if isinstance(out, tuple) else (out,)
                del net
            done[name] = res
            del loaded
            gc.collect()
        return done[name]

    return get


@pytest.mark.parametrize("name", NETS)
def test_openvino_fp32_matches_torch_fp32(outputs, name):
    res = outputs(name)
    ref = res[("torch", "fp32")]
    for i, (ov, pt) in enumerate(zip(res[("openvino", "fp32")], ref, strict=True)):
        assert ov.dtype == torch.float32 and ov.shape == pt.shape
        err = rel_l2(ov, pt)
        assert err <= 1e-4, f"{name} output {i}: OpenVINO fp32 rel-L2 {err:.3g} > 1e-4"


@pytest.mark.parametrize("name", [n for n in NETS if (getattr(n, "values", (n,))[0]) in GOLDEN_OUTPUTS])
def test_torch_backend_fp32_is_the_golden_call(outputs, name):
    from tests.models.golden import golden

    manifest_name = CHECKPOINT_NETS[name][0]
    g = golden(manifest_name)
    fp16 = set(str(g["float16_outputs"]).split(",")) - {""}
    for key, out in zip(GOLDEN_OUTPUTS[name], outputs(name)[("torch", "fp32")], strict=True):
        err = rel_l2(out, torch.from_numpy(np.asarray(g[key], dtype=np.float32)).reshape(out.shape))
        assert err <= (1e-3 if key in fp16 else 1e-4), f"{name}.{key}: {err:.3g}"


def _auto_bf16(name: str) -> bool:
    from facerest_cli.backend.calls import arch_call
    from facerest_cli.weights.registry import load_registry

    entry = CHECKPOINT_NETS[name][1] if name in CHECKPOINT_NETS else name
    return arch_call(load_registry().get(entry).arch).auto_bf16


@pytest.mark.parametrize("name", [n for n in NETS if _auto_bf16(getattr(n, "values", (n,))[0])])
@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_bf16_stays_close_to_fp32(outputs, name, backend):
    """For the networks ``--precision auto`` runs in bf16 (``ArchCall.auto_bf16``; the others stay fp32)."""
    res = outputs(name)
    ref = res[("torch", "fp32")]
    for i, (low, pt) in enumerate(zip(res[(backend, "bf16")], ref, strict=True)):
        assert torch.isfinite(low).all()
        err = rel_l2(low, pt)
        assert err <= 2e-2, f"{name} output {i}: {backend} bf16 rel-L2 {err:.3g} > 2e-2"
    if name in RESTORERS:
        psnr = psnr_crop(res[(backend, "bf16")][0], ref[0])
        assert psnr >= 35.0, f"{name}: {backend} bf16 crop PSNR {psnr:.1f} dB < 35"


def test_torch_fp32_is_bit_identical_to_the_direct_call(mobilefacenet, caps):
    """``--backend torch --precision fp32`` changes nothing: same module, same layout as today's recognizer."""
    import copy
    import dataclasses

    from facerest_cli.backend.calls import arch_call

    (x,) = mobilefacenet.inputs
    today = copy.deepcopy(mobilefacenet.net).to(memory_format=torch.channels_last).eval()  # TorchRecognizer's setup
    with torch.inference_mode():
        direct = arch_call("mobilefacenet").fn(today, x.contiguous(memory_format=torch.channels_last))
    own = dataclasses.replace(mobilefacenet, net=copy.deepcopy(mobilefacenet.net))  # the backend moves it in place
    net = build(own, "torch", "fp32", caps, channels_last=True)
    assert torch.equal(net(x), direct)
    assert torch.equal(net(x.numpy()), direct)  # numpy in, same tensor out

"""OpenVINO batching modes on one cached IR (per-face streams, static per size, dynamic), a dynamic-size detector,
SGPN's three inputs per face, and the default batch sizes."""

from __future__ import annotations

import pytest
import torch

from tests.backend.nets import build, rel_l2


@pytest.mark.parametrize("mode", ["per-face", "static", "dynamic"])
def test_batch_modes_match_torch_on_four_real_faces(mobilefacenet, caps, session_cache, mobilefacenet_entry, mode):
    (x,) = mobilefacenet.inputs
    assert x.shape[0] == 4
    ref = build(mobilefacenet, "torch", "fp32", caps)(x)
    conversions = session_cache.conversions
    net = build(mobilefacenet, "openvino", "fp32", caps, session_cache, max_batch=4, batch_mode=mode)
    assert net.info.source == "cache" and session_cache.conversions == conversions  # one IR serves every mode
    if mode == "per-face":
        assert net.properties()["PERFORMANCE_HINT"] == "THROUGHPUT"
    out4 = net(x)
    assert rel_l2(out4, ref) <= 1e-5
    # rows are independent of the batch they travel in, and of their order
    assert rel_l2(net(x[2:3]), ref[2:3]) <= 1e-5
    assert rel_l2(net(x.flip(0)[:3]), ref.flip(0)[:3]) <= 1e-5
    assert rel_l2(out4[0], out4[1]) > 0.1  # four different faces


class _ThreeInputs(torch.nn.Module):
    """SGPN's call shape in miniature: a face, a render of the same size, and a coefficient vector per face."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.b = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(257, 4)

    def forward(self, x, render, coeff):
        return self.a(x) + self.b(render) * self.fc(coeff)[:, :, None, None]


def test_per_face_requests_slice_every_input(caps):
    from facerest_cli.backend.api import BackendOptions, build_network
    from facerest_cli.backend.calls import ArchCall
    from facerest_cli.models.sgpn import SGPN
    from facerest_cli.backend.network import ModelId
    from facerest_cli.models.arch import TensorSpec
    from facerest_cli.backend.wrap import TensorCall

    def call3(net, x, render, coeff):  # the adapter shape of SGPN's call, on the miniature
        return net(x, render, coeff)

    spec = ArchCall(call3, (TensorSpec((1, 3, 16, 16)), TensorSpec((1, 3, 16, 16)), TensorSpec((1, 257))))
    assert SGPN.call.__code__.co_varnames[:4] == ("net", "x", "render", "coeff")
    call = TensorCall(_ThreeInputs().eval(), call3)
    g = torch.Generator().manual_seed(1)
    inputs = (torch.rand(3, 3, 16, 16, generator=g), torch.rand(3, 3, 16, 16, generator=g), torch.randn(3, 257, generator=g))
    with torch.inference_mode():
        ref = call(*inputs)
    net = build_network(call, spec, ModelId("tiny", "tiny", "0" * 64), BackendOptions("openvino", "fp32", "cpu", caps, max_batch=3))
    assert rel_l2(net(*inputs), ref) <= 1e-5
    assert rel_l2(net(*(t.numpy() for t in inputs)), ref) <= 1e-5  # numpy in


def test_retinaface_keeps_dynamic_image_size(tmp_path_factory, caps, session_cache):
    """One conversion serves every image size (H and W stay dynamic in the IR)."""
    from tests.backend.nets import load_checkpoint_net

    loaded = load_checkpoint_net("retinaface-mnet", tmp_path_factory.mktemp("retina"))
    net = build(loaded, "openvino", "fp32", caps, session_cache)
    ref_net = build(loaded, "torch", "fp32", caps)
    g = torch.Generator().manual_seed(0)
    for h, w in ((320, 480), (256, 256)):
        x = torch.rand(1, 3, h, w, generator=g) * 255 - 117
        outs, refs = net(x), ref_net(x)
        assert [o.shape[1] for o in outs] == [r.shape[1] for r in refs]  # one row per prior of this size
        assert all(rel_l2(o, r) <= 1e-4 for o, r in zip(outs, refs))


def test_default_batch_sizes():
    from facerest_cli.backend.batch import default_batch_size

    assert default_batch_size("torch", "cpu", "fp32") == 1
    assert default_batch_size("torch", "cpu", "bf16") == 4
    assert default_batch_size("openvino", "cpu", "fp32") == default_batch_size("openvino", "cpu", "bf16") == 8
    assert default_batch_size("torch", "cuda", "fp16") == default_batch_size("torch", "mps", "fp32") == 8

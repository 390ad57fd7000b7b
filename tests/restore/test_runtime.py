"""The batched restorer runtime: batching invariance, strength, precision guard (issue: checkpoint-exact)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from facerest_cli.config import RestoreConfig
from facerest_cli.errors import UsageError
from facerest_cli.registry import from_network
from facerest_cli.restore.networks import NetworkRestorer
from facerest_cli.weights.registry import load_registry
from facerest_cli.restore.runtime import RestoreRuntime
from tests.conftest import shared_file

SIZE = 64


def _small_gfpgan() -> NetworkRestorer:
    """GFPGANv1Clean's own classes at 64x64 and narrow widths: the real code path, CPU-cheap."""
    from facerest_cli.models.gfpgan import gfpgan_v1_clean

    torch.manual_seed(0)
    net = gfpgan_v1_clean(out_size=SIZE, narrow=0.125, channel_multiplier=1)
    with torch.no_grad():
        for p in net.parameters():  # non-trivial weights everywhere (noise strengths, biases)
            p.add_(torch.randn_like(p) * 0.05)
    return NetworkRestorer(from_network("gfpgan-1.4", load_registry(), net), RestoreConfig(), size=SIZE)


def _real_crops(n: int) -> list[np.ndarray]:
    files = sorted(shared_file("images", "codeformer", "cropped_faces").glob("*.png"))[:n]
    assert len(files) == n
    return [cv2.resize(cv2.imread(str(f)), (SIZE, SIZE), interpolation=cv2.INTER_AREA) for f in files]


def test_batch_of_8_equals_8_single_calls():
    rt = RestoreRuntime(_small_gfpgan(), "cpu")
    crops = _real_crops(8)
    batched = rt.restore(crops, [1.0] * 8)
    singles = np.concatenate([rt.restore([c], [1.0]) for c in crops])
    assert batched.shape == (8, SIZE, SIZE, 3) and batched.dtype == np.float32
    assert rt.calls == 9
    err = np.abs(batched - singles).max()
    assert err <= 1e-5, err
    # and the network really depends on its input: different faces give different outputs
    assert np.abs(batched[0] - batched[1]).mean() > 1e-3


def test_strength_zero_returns_the_input_crop_and_one_the_restorer_output():
    restorer = _small_gfpgan()
    rt = RestoreRuntime(restorer, "cpu")
    crops = _real_crops(3)
    out = rt.restore(crops, [0.0, 1.0, 0.5])
    inputs = np.stack(crops).astype(np.float32) / 255.0
    assert np.array_equal(out[0], inputs[0]), "strength 0 must give the input crop back exactly"
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).flip(1).float() / 255.0
    with torch.inference_mode():
        raw = restorer(x).clamp(0, 1).flip(1).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(out[1], raw[1]), "strength 1 must give the restorer's output exactly"
    assert np.allclose(out[2], 0.5 * raw[2] + 0.5 * inputs[2], atol=1e-6)
    assert np.abs(out[1] - inputs[1]).mean() > 1e-2, "the test restorer must change the face"


def test_16bit_crops_keep_their_precision_through_the_runtime():
    crops8 = _real_crops(1)
    crop16 = crops8[0].astype(np.uint16) * 257 + 100
    rt = RestoreRuntime(_small_gfpgan(), "cpu")
    out = rt.restore([crop16], [0.0])
    assert np.array_equal(out[0], crop16.astype(np.float32) / 65535.0)


def test_fp16_is_refused_on_cpu_and_bf16_runs_close_to_fp32():
    """The runtime has no precision of its own: the network's ``Execution`` decides. fp16 has no CPU kernels
    (a clear error); bf16 on CPU runs through the torch backend and stays close to fp32 on real crops."""
    from facerest_cli.registry import Execution

    net = _small_gfpgan().model.net
    with pytest.raises(UsageError, match="fp16 needs a GPU"):
        from_network("gfpgan-1.4", load_registry(), net, execution=Execution("cpu", "torch", "fp16"))
    crops = _real_crops(2)
    ref = RestoreRuntime(_small_gfpgan(), "cpu").restore(crops, [1.0] * 2)
    bf16 = from_network("gfpgan-1.4", load_registry(), _small_gfpgan().model.net, execution=Execution("cpu", "torch", "bf16"))
    assert bf16.info.precision == "bf16"
    out = RestoreRuntime(NetworkRestorer(bf16, RestoreConfig(), SIZE), "cpu").restore(crops, [1.0] * 2)
    assert np.isfinite(out).all() and np.abs(out - ref).mean() < 2e-2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (runs on the lent H200, never in CI)")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_on_cuda_stays_close_to_fp32(precision):
    from facerest_cli.registry import Execution

    crops = _real_crops(8)
    ref_model = from_network("gfpgan-1.4", load_registry(), _small_gfpgan().model.net, "cuda")
    ref = RestoreRuntime(NetworkRestorer(ref_model, RestoreConfig(), SIZE), "cuda").restore(crops, [1.0] * 8)
    half_model = from_network("gfpgan-1.4", load_registry(), _small_gfpgan().model.net,
                              execution=Execution("cuda", "torch", precision))
    half = RestoreRuntime(NetworkRestorer(half_model, RestoreConfig(), SIZE), "cuda").restore(crops, [1.0] * 8)
    assert np.isfinite(half).all()
    assert np.abs(half - ref).mean() < 2e-2


def test_strength_zero_faces_skip_the_restorer_call():
    """A face kept as it is (strength 0: a box the 3D prior contradicts) costs no restorer work; the faces around
    it get the same crops as without it."""
    from tests.doubles import BlurRestorer

    crops = _real_crops(3)
    blur = BlurRestorer(size=SIZE, sigma=2.0)
    rt = RestoreRuntime(blur, "cpu")
    out = rt.restore(crops, [1.0, 0.0, 0.5])
    assert blur.calls == [2]
    assert np.array_equal(out[1], crops[1].astype(np.float32) / 255.0)
    alone = RestoreRuntime(BlurRestorer(size=SIZE, sigma=2.0), "cpu").restore([crops[0], crops[2]], [1.0, 0.5])
    assert np.array_equal(out[0], alone[0]) and np.array_equal(out[2], alone[1])
    assert np.abs(out[0] - crops[0].astype(np.float32) / 255.0).mean() > 1e-3  # the blur ran on face 0
    assert np.array_equal(rt.restore(crops[:2], [0.0, 0.0]), np.stack(crops[:2]).astype(np.float32) / 255.0)
    assert blur.calls == [2], "a batch of strength-0 faces makes no call"

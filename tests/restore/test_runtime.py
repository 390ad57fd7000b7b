"""The batched restorer runtime: batching invariance, strength, precision guard (issue: checkpoint-exact)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from facerest_cli.config import RestoreConfig
from facerest_cli.errors import UsageError
from facerest_cli.restore.networks import NetworkRestorer
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
    return NetworkRestorer("gfpgan-small", net, "gfpgan_v1_clean", RestoreConfig(), "cpu", size=SIZE)


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


def test_half_precision_is_refused_on_cpu_with_a_clear_message():
    with pytest.raises(UsageError, match="needs a GPU"):
        RestoreRuntime(_small_gfpgan(), "cpu", precision="bf16")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (runs on the lent H200, never in CI)")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_on_cuda_stays_close_to_fp32(precision):
    r = _small_gfpgan()
    crops = _real_crops(8)
    ref = RestoreRuntime(NetworkRestorer("g", r.net, "gfpgan_v1_clean", RestoreConfig(), "cuda", SIZE), "cuda").restore(crops, [1.0] * 8)
    half = RestoreRuntime(
        NetworkRestorer("g", r.net, "gfpgan_v1_clean", RestoreConfig(precision=precision), "cuda", SIZE), "cuda", precision
    ).restore(crops, [1.0] * 8)
    assert np.isfinite(half).all()
    assert np.abs(half - ref).mean() < 2e-2

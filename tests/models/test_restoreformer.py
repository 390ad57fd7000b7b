"""RestoreFormer++: golden equivalence, the Lightning .ckpt layout through the real loader, batching, fp32 codes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from facerest_cli.errors import WeightsError
from tests.models.golden import golden, make_checkpoint_module, manifest, run_equivalence

ENTRY = "restoreformer-pp"
MANIFEST = "restoreformer_pp"


def test_matches_official_golden(tmp_path):
    def call(net, g):
        assert str(g["call"]).startswith("out = net(x)[0]")
        dec, _, info, _ = net(torch.from_numpy(g["input"]))
        return {"output": dec, "code_idx": info[2]}

    errs = run_equivalence(MANIFEST, ENTRY, call, tmp_path)
    # Measured: output 4.6e-6 (the official code on other kernels: 5.7e-6); code_idx exact.
    assert set(errs) == {"output", "code_idx"}


@pytest.fixture(scope="module")
def official_sd() -> dict[str, torch.Tensor]:
    return make_checkpoint_module().make_state_dict(manifest(MANIFEST), 0)


def _lightning_ckpt(sd: dict[str, torch.Tensor], drop: str | None = None) -> dict:
    """What the released RestoreFormer++.ckpt looks like: a Lightning dict whose state_dict also holds the
    loss/discriminator weights (no ``vqvae.`` prefix) next to the ``vqvae.``-prefixed generator."""
    state = {f"vqvae.{k}": v for k, v in sd.items() if k != drop}
    g = torch.Generator().manual_seed(1)
    state["loss.discriminator.main.0.weight"] = torch.randn(64, 3, 4, 4, generator=g)
    state["loss.discriminator.main.0.bias"] = torch.zeros(64)
    state["loss.perceptual_loss.net.slice1.0.weight"] = torch.randn(64, 3, 3, 3, generator=g)
    return {"epoch": 7, "global_step": 123, "state_dict": state}


@pytest.fixture(scope="module")
def net(official_sd, tmp_path_factory):
    """The net loaded through ``load_model`` from a full Lightning-style file (extra keys included)."""
    from facerest_cli.weights.loader import load_model
    from facerest_cli.weights.registry import load_registry

    path = tmp_path_factory.mktemp("rf") / "RestoreFormer++.ckpt"
    torch.save(_lightning_ckpt(official_sd), path)
    return load_model(load_registry().get(ENTRY), path)


def test_full_lightning_ckpt_loads_and_ignores_other_heads(net, official_sd):
    have = net.state_dict()
    assert list(have) == list(official_sd)
    assert all(torch.equal(have[k], v) for k, v in official_sd.items())
    assert not net.training


def test_ckpt_missing_one_generator_key_is_refused(official_sd, tmp_path):
    from facerest_cli.weights.loader import load_model
    from facerest_cli.weights.registry import load_registry

    path = tmp_path / "RestoreFormer++.ckpt"
    torch.save(_lightning_ckpt(official_sd, drop="decoder.up.4.attn.2.norm2.weight"), path)
    # The official loader (strict=False) would silently keep a random tensor here; ours must not.
    with pytest.raises(WeightsError, match="missing.*decoder.up.4.attn.2.norm2.weight"):
        load_model(load_registry().get(ENTRY), path)


def test_batch_of_two_matches_single_calls(net):
    # 128x128 keeps it cheap; all attention levels still run (latent 4x4). Two different faces.
    a = F.avg_pool2d(torch.from_numpy(golden(MANIFEST)["input"]), 4)
    b = a.flip(-1)
    with torch.inference_mode():
        dec, _, info, _ = net(torch.cat([a, b]))
        singles = [net(a), net(b)]
        restored = net.restore(b)
    assert not torch.equal(singles[0][2][2], singles[1][2][2])  # the two inputs really differ
    assert torch.equal(info[2], torch.cat([s[2][2] for s in singles]))
    for i, s in enumerate(singles):
        # Measured 5.5e-6: oneDNN picks other conv kernels for batch 2 from the 32x32 level on.
        err = float((dec[i] - s[0][0]).double().norm() / s[0][0].double().norm())
        assert err <= 1e-5, (i, err)
    # The lean inference path is the same computation as the official forward.
    assert torch.equal(restored, singles[1][0])
    with pytest.raises(ValueError, match=r"multiples of 32, got \(1, 3, 100, 128\)"):
        net.restore(a[..., :100, :])


def test_code_search_stays_float32_under_autocast():
    from facerest_cli.models.restoreformer import VectorQuantizer

    vq = VectorQuantizer(1024, 256, beta=0.25).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        vq.embedding.weight.copy_(torch.randn(1024, 256, generator=g) * 0.2)
    z = torch.randn(2, 256, 16, 16, generator=g) * 0.2
    with torch.no_grad():
        z_q, _, (_, _, idx, d) = vq(z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z_q_amp, _, (_, _, idx_amp, d_amp) = vq(z)
        exact = torch.cdist(z.permute(0, 2, 3, 1).reshape(-1, 256).double(), vq.embedding.weight.double()).argmin(1)
    assert d_amp.dtype == torch.float32 and torch.equal(idx_amp, idx)
    assert torch.equal(idx[:, 0], exact)
    # z_q is exactly the chosen codebook rows, in the input's layout.
    assert torch.equal(z_q_amp, z_q)
    assert torch.equal(z_q.permute(0, 2, 3, 1).reshape(-1, 256), vq.embedding.weight[idx[:, 0]])


def test_v1_constructor_drops_the_second_scale_attention():
    from facerest_cli.models.restoreformer import restoreformer_pp

    with torch.device("meta"):
        pp = restoreformer_pp().state_dict()
        v1 = restoreformer_pp(head_size=8, ex_multi_scale_num=0)
    dropped = set(pp) - set(v1.state_dict())
    # RestoreFormer v1: no cross-attention at 32x32 (36 keys fewer), 8 heads of 64 channels at 16x16.
    assert len(dropped) == 36 and all(k.startswith("decoder.up.4.attn.") for k in dropped)
    assert set(v1.state_dict()) < set(pp)
    assert v1.decoder.mid.attn_1.att_size == 64 and v1.decoder.up[5].attn[0].head_size == 8

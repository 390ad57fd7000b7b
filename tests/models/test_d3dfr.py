"""Deep3DFaceRecon ResNet-50 regressor: golden equivalence, batch consistency, and the shared ResNet trunk."""

from __future__ import annotations

import torch

from facerest_cli.models.d3dfr import NUM_COEFFS, d3dfr_resnet50, split_coeffs
from facerest_cli.models.resnet import resnet18, resnet34, resnet50
from tests.models.golden import run_equivalence


def test_golden_d3dfr_and_batch_consistency(tmp_path):
    def call(net, g):
        a = torch.from_numpy(g["input"])
        b = a.flip(-1).roll(7, dims=-2)
        single_a, single_b = net(a), net(b)
        batched = net(torch.cat([a, b]))
        # checked on the loaded golden weights: random default-init weights would hide batch mixing
        assert batched.shape == (2, NUM_COEFFS)
        assert (single_a - single_b).norm() > 1e-2 * single_a.norm(), "the two inputs should give different coefficients"
        for i, ref in enumerate((single_a, single_b)):
            assert (batched[i] - ref[0]).norm() <= 1e-5 * ref.norm(), f"batch row {i} differs from its single call"
        return {"coeffs": single_a}

    errs = run_equivalence("deep3dfacerecon_resnet50", "d3dfr", call, tmp_path)
    assert set(errs) == {"coeffs"}


def test_coefficient_layout():
    c = torch.arange(2 * NUM_COEFFS, dtype=torch.float32).view(2, NUM_COEFFS)
    parts = split_coeffs(c)
    assert {k: v.shape[-1] for k, v in parts.items()} == {"id": 80, "exp": 64, "tex": 80, "angle": 3, "gamma": 27, "trans": 3}
    assert torch.equal(torch.cat(list(parts.values()), -1), c)


def test_resnet_trunks_have_torchvision_parameter_counts():
    # torchvision's published counts for resnet18 / 34 / 50 with the 1000-class fc
    for build, n in ((resnet18, 11_689_512), (resnet34, 21_797_672), (resnet50, 25_557_032)):
        assert sum(p.numel() for p in build().parameters()) == n
    head = d3dfr_resnet50(use_last_fc=True).state_dict()
    assert head["backbone.fc.weight"].shape == (NUM_COEFFS, 2048) and not any(k.startswith("final_layers") for k in head)

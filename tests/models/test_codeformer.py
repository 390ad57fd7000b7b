"""CodeFormer: the same function as the official network (golden), and batch-consistent.

One face-forward costs ~0.8 TFLOP (about 8 s on 2 quiet cores), so the golden run's net and its w=0.5 outputs
are cached for the batch test: the file does 5 face-forwards in all when run whole.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pytest
import torch

from tests.models.golden import golden, make_checkpoint_module, manifest, run_equivalence


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def cache() -> dict[str, Any]:
    """Net and single-face outputs of the golden run, reused by the batch test."""
    return {}


def test_golden_equivalence(tmp_path, cache):
    def call(net: torch.nn.Module, g: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        x = torch.from_numpy(g["input"])
        out, logits, lq_feat = net(x, w=0.5, adain=True)
        out_w1 = net(x, w=1.0, adain=True)[0]
        assert tuple(lq_feat.shape) == (1, 256, 16, 16)
        cache.update(net=net, x=x, out=out, logits=logits)
        return {"output": out, "output_w1": out_w1, "logits": logits, "code_idx": logits.argmax(dim=2)}

    errs = run_equivalence("codeformer", "codeformer", call, tmp_path)
    assert set(errs) == {"output", "output_w1", "logits", "code_idx"}
    print("codeformer rel-L2 vs golden:", {k: f"{v:.2e}" for k, v in errs.items()})


def _net_and_single(cache: dict[str, Any]) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The golden run's net and outputs, or (when this test runs alone) the same built without the loader."""
    if "net" not in cache:
        from facerest_cli.models.codeformer import codeformer

        net = codeformer().eval()
        net.load_state_dict(make_checkpoint_module().make_state_dict(manifest("codeformer"), 0))
        x = torch.from_numpy(golden("codeformer")["input"])
        with torch.inference_mode():
            out, logits, _ = net(x, w=0.5, adain=True)
        cache.update(net=net, x=x, out=out, logits=logits)
    return cache["net"], cache["x"], cache["out"], cache["logits"]


@pytest.mark.slow  # a whole run or a full-size network: CI runs it, `make test-fast` skips it
def test_batch_of_two_matches_single_calls(cache):
    net, x1, out1, logits1 = _net_and_single(cache)
    x2 = torch.flip(x1, dims=[3])  # another face: the mirrored one
    with torch.inference_mode():
        out_b, logits_b, _ = net(torch.cat([x1, x2]), w=0.5, adain=True)
        out2, logits2, _ = net(x2, w=0.5, adain=True)
    assert _rel(out2, out1) > 1e-2, "the two inputs should give different faces"
    for i, (out, logits) in enumerate([(out1, logits1), (out2, logits2)]):
        assert _rel(out_b[i : i + 1], out) <= 1e-5, f"sample {i}: batched output differs"
        assert _rel(logits_b[i : i + 1], logits) <= 1e-5, f"sample {i}: batched logits differ"
        assert torch.equal(logits_b[i : i + 1].argmax(dim=2), logits.argmax(dim=2)), f"sample {i}: codes differ"


def test_rejects_bad_input_before_computing(cache):
    from facerest_cli.models.codeformer import codeformer

    net = cache["net"] if "net" in cache else codeformer().eval()  # checks come first: weights do not matter
    with torch.inference_mode():
        with pytest.raises(ValueError, match=r"\(B, 3, 512, 512\), got \(1, 3, 256, 256\)"):
            net(torch.zeros(1, 3, 256, 256))
        with pytest.raises(ValueError, match="must be in \\[0, 1\\], got 1.5"):
            net(torch.zeros(1, 3, 512, 512), w=1.5)

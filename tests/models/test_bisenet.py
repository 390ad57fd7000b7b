"""BiSeNet face parser: the official function (golden), batch independence, and the class-index tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.models import golden as G


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def test_matches_official_golden(tmp_path):
    seen: dict[str, float] = {}

    def call(net, g):
        x = torch.from_numpy(g["input"])
        logits, logits16, logits32 = net(x)  # str(g['call']): logits, logits16, logits32 = net(x)
        # parse() is the inference shortcut (no auxiliary heads): it must give forward's first output exactly.
        seen["parse_vs_forward"] = _rel(net.parse(x), logits)
        return {"logits": logits, "logits16": logits16, "logits32": logits32}

    errs = G.run_equivalence("parsing_bisenet", "bisenet", call, tmp_path)
    # float16 storage of the golden alone costs ~2.1e-4; the official code itself measures 2.0884e-4.
    assert errs["logits"] <= 3e-4, errs
    assert seen["parse_vs_forward"] <= 1e-6


@pytest.fixture(scope="module")
def net():
    from facerest_cli.models.bisenet import bisenet

    m = bisenet()
    m.load_state_dict(G.make_checkpoint_module().make_state_dict(G.manifest("parsing_bisenet"), 0))
    return m.eval()


def test_batch_of_two_equals_two_single_calls(net):
    x0 = torch.from_numpy(np.asarray(G.golden("parsing_bisenet")["input"]))
    x1 = torch.flip(x0, dims=[3]) * 0.8 + 0.1  # a different face-like input, not a copy
    with torch.inference_mode():
        batch = net(torch.cat([x0, x1]))
        singles = [net(x0), net(x1)]
    assert batch[0].shape == (2, 19, 512, 512)
    for head in range(3):
        assert _rel(batch[head][:1], singles[0][head]) <= 1e-5
        assert _rel(batch[head][1:], singles[1][head]) <= 1e-5
    # The two samples really differ, so the comparison above could have failed.
    assert _rel(batch[0][1:], batch[0][:1]) > 0.05


def test_class_table_follows_face_parsing_pytorch():
    from facerest_cli.models.bisenet import CLASS_NAMES, FACE_CLASSES

    assert len(CLASS_NAMES) == 19 == len(set(CLASS_NAMES))
    assert CLASS_NAMES[0] == "background" and CLASS_NAMES[1] == "skin"
    assert (CLASS_NAMES[10], CLASS_NAMES[14], CLASS_NAMES[17]) == ("nose", "neck", "hair")
    assert FACE_CLASSES == (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13)
    kept = {CLASS_NAMES[i] for i in FACE_CLASSES}
    assert not kept & {"background", "hair", "hat", "neck", "neck_l", "cloth", "ear_r"}

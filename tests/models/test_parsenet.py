"""ParseNet face parser: the official function (golden), batch independence, and its class order vs BiSeNet's."""

from __future__ import annotations

import numpy as np
import torch

from tests.models import golden as G


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def test_matches_official_golden(tmp_path):
    def call(net, g):
        logits, out_img = net(torch.from_numpy(g["input"]))  # str(g['call']): logits, out_img = net(x)
        return {"logits": logits, "out_img": out_img}

    errs = G.run_equivalence("parsing_parsenet", "parsenet", call, tmp_path)
    # float16 storage of the golden alone costs ~2.3e-4 (the official code measures 2.268e-4 / 2.418e-4).
    assert errs["logits"] <= 3e-4 and errs["out_img"] <= 3e-4, errs


def test_batch_of_two_equals_two_single_calls():
    """Fully convolutional, so 64x64 crops of the golden face exercise every layer at 1/64 of the cost."""
    from facerest_cli.models.parsenet import parsenet

    torch.manual_seed(0)
    net = parsenet().eval()  # default init: eval-mode BN is near identity, so the signal survives all 28 blocks
    face = torch.from_numpy(np.asarray(G.golden("parsing_parsenet")["input"]))
    x0 = face[:, :, 224:288, 160:224].contiguous()  # an eye
    x1 = face[:, :, 352:416, 224:288].contiguous()  # the mouth
    with torch.inference_mode():
        batch = net(torch.cat([x0, x1]))
        singles = [net(x0), net(x1)]
        parsed = net.parse(x0)
    assert batch[0].shape == (2, 19, 64, 64) and batch[1].shape == (2, 3, 64, 64)
    for head in range(2):
        assert _rel(batch[head][:1], singles[0][head]) <= 1e-5
        assert _rel(batch[head][1:], singles[1][head]) <= 1e-5
    assert _rel(batch[0][1:], batch[0][:1]) > 0.05
    assert _rel(parsed, singles[0][0]) <= 1e-6


def test_class_order_is_celebamask_hq_not_bisenet():
    from facerest_cli.models import bisenet, parsenet

    assert sorted(parsenet.CLASS_NAMES) == sorted(bisenet.CLASS_NAMES)
    assert parsenet.CLASS_NAMES[:3] == ("background", "skin", "nose")
    assert (parsenet.CLASS_NAMES[13], parsenet.CLASS_NAMES[17]) == ("hair", "neck")
    assert parsenet.FACE_CLASSES == tuple(range(1, 13))
    # The same facial parts, whatever the index order.
    assert {parsenet.CLASS_NAMES[i] for i in parsenet.FACE_CLASSES} == {
        bisenet.CLASS_NAMES[i] for i in bisenet.FACE_CLASSES
    }

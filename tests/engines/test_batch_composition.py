"""What makes the engines write the same bytes: a face's restored crop does not depend on which faces share its
restorer call (the local scheduler and Ray actors batch faces differently)."""

from __future__ import annotations

import numpy as np
import torch

from facerest_cli.restore.base import Passthrough
from facerest_cli.restore.runtime import RestoreRuntime
from tests.restore.test_runtime import _real_crops, _small_gfpgan


def test_8_and_16_bit_faces_in_one_batch_keep_their_own_scale():
    """A 16-bit scan's face and 8-bit faces gathered into one call: each is scaled by its own maximum (before the
    fix, np.stack made the 8-bit crops 16-bit and they came back near black)."""
    rng = np.random.default_rng(0)
    c8 = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    c16 = rng.integers(0, 65536, (32, 32, 3), dtype=np.uint16)
    rt = RestoreRuntime(Passthrough(32), "cpu")
    out = rt.restore([c8, c16, c8], [1.0, 1.0, 1.0])
    assert np.array_equal(out[0], c8.astype(np.float32) / 255) and np.array_equal(out[2], out[0])
    assert np.array_equal(out[1], c16.astype(np.float32) / 65535)


def test_a_face_gets_the_same_bits_alone_or_in_any_batch_on_cpu():
    """GFPGAN's own classes (small widths): a face restored alone, in a batch of 3, in a batch of 5 with other
    neighbours and beside a 16-bit face gives bit-identical crops (one contiguous face per network call on CPU)."""
    torch.manual_seed(0)
    rt = RestoreRuntime(_small_gfpgan(), "cpu")
    crops = _real_crops(6)
    alone = rt.restore([crops[0]], [1.0])[0]
    in3 = rt.restore(crops[:3], [1.0] * 3)[0]
    in5 = rt.restore([crops[0], *crops[2:6]], [1.0, 0.5, 1.0, 1.0, 1.0])[0]
    with16 = rt.restore([crops[0], crops[1].astype(np.uint16) * 257], [1.0, 1.0])[0]  # a 16-bit neighbour
    assert np.array_equal(alone, in3) and np.array_equal(alone, in5) and np.array_equal(alone, with16)
    assert np.abs(alone - crops[0][..., ::-1].astype(np.float32)[..., ::-1] / 255).mean() > 1e-3  # the net ran

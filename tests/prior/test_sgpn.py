"""SGPN's prior: BFM09 (licence-gated: tested on small synthetic models in both file formats), the D3DFR
alignment, and the render's place in the restorer's crop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.io import loadmat, savemat

from tests.conftest import shared_file


def _cap(n_lat=12, n_lon=24, radius=0.8):
    """A spherical cap facing +z (the camera side in BFM coordinates): vertices (V, 3) and outward triangles."""
    verts = [[0.0, 0.0, radius]]
    for i in range(1, n_lat + 1):
        th = (math.pi / 2) * i / n_lat
        for j in range(n_lon):
            ph = 2 * math.pi * j / n_lon
            verts.append([radius * math.sin(th) * math.cos(ph), radius * math.sin(th) * math.sin(ph), radius * math.cos(th)])
    tris = [(0, 1 + j, 1 + (j + 1) % n_lon) for j in range(n_lon)]
    for i in range(n_lat - 1):
        a, b = 1 + i * n_lon, 1 + (i + 1) * n_lon
        for j in range(n_lon):
            j2 = (j + 1) % n_lon
            tris += [(a + j, b + j, b + j2), (a + j, b + j2, a + j2)]
    return np.array(verts), np.array(tris, np.int64)


@pytest.fixture()
def front_model(tmp_path):
    v, t = _cap()
    n = v.size
    rng = np.random.default_rng(0)
    path = tmp_path / "BFM_model_front.mat"
    savemat(path, {"meanshape": v.reshape(1, -1), "idBase": rng.normal(size=(n, 80)) * 1e-3,
                   "exBase": rng.normal(size=(n, 64)) * 1e-3, "meantex": np.full((1, n), 150.0),
                   "texBase": np.zeros((n, 80)), "tri": t + 1})
    return path


def test_bfm09_missing_says_where_to_get_it(store):
    from facerest_cli.errors import WeightsMissingError
    from facerest_cli.prior.bfm09 import Bfm09

    with pytest.raises(WeightsMissingError) as e:
        Bfm09.load(store)
    msg = str(e.value)
    assert "University of Basel" in msg and "cannot download" in msg
    assert "faces.dmi.unibas.ch" in msg and "facerest weights import 01_MorphableModel.mat" in msg


def test_front_model_reconstruction(front_model):
    from facerest_cli.prior.bfm09 import Bfm09, rotation

    m = Bfm09.from_mat(front_model)
    assert m.exp_base is not None and m.tri.min() == 0
    screen, colors = m.reconstruct(torch.zeros(2, 257))
    # Mean face (centred), no rotation, camera 10 units away, f = 1015: centred on the 224 crop.
    c = screen[0, :, :2].mean(0)
    assert torch.allclose(c, torch.tensor([112.0, 112.0]), atol=0.5)
    width = float(screen[0, :, 0].max() - screen[0, :, 0].min())
    assert abs(width - 2 * 0.8 * 1015 / (10 - 0.0)) < 8  # ~162 px (the rim is 10 units away)
    # Ambient SH only (gamma = 0, +0.8 on the DC term): colour = 150 * pi * 0.2821 * 0.8 / 255.
    assert torch.allclose(colors, torch.full_like(colors, 150 * math.pi / math.sqrt(4 * math.pi) * 0.8 / 255), atol=1e-5)
    # Rotation convention: v @ R with R = (Rz Ry Rx)^T; a quarter turn about z takes +x to +y.
    r = rotation(torch.tensor([[0.0, 0.0, math.pi / 2]]))
    assert torch.allclose(torch.tensor([[1.0, 0.0, 0.0]]) @ r[0], torch.tensor([[0.0, 1.0, 0.0]]), atol=1e-6)
    # Yaw (angle y) turns the cap's apex (vertex 0, on +z) to +x: (z sin y, 0, z cos y), seen from z = 10.
    s2, _ = m.reconstruct(torch.cat([torch.zeros(1, 224), torch.tensor([[0.0, 0.4, 0.0]]), torch.zeros(1, 30)], 1))
    za = 0.8 - float(m.meanshape[:, 2].mean())
    want = 112 + 1015 * za * math.sin(0.4) / (10 - za * math.cos(0.4))
    assert abs(float(s2[0, 0, 0]) - want) < 0.01 and abs(float(s2[0, 0, 2]) - (10 - za * math.cos(0.4))) < 1e-4


def test_raw_basel_file_is_converted(tmp_path):
    from facerest_cli.prior.bfm09 import Bfm09

    v, t = _cap(4, 8)
    n = v.size
    rng = np.random.default_rng(1)
    pc, ev = rng.normal(size=(n, 199)), np.linspace(2, 1, 199)[:, None]
    path = tmp_path / "01_MorphableModel.mat"
    savemat(path, {"shapeMU": v.reshape(-1, 1) * 1e5, "shapePC": pc, "shapeEV": ev, "texMU": np.full((n, 1), 100.0),
                   "texPC": pc, "texEV": ev, "tl": t + 1})
    m = Bfm09.from_mat(path)
    np.testing.assert_allclose(m.meanshape, v, rtol=1e-6)
    np.testing.assert_allclose(m.id_base, (pc * ev.T)[:, :80] / 1e5, rtol=1e-5)
    assert m.exp_base is None and "no expression" in m.source
    np.testing.assert_array_equal(m.tri, t)


def test_d3dfr_alignment_puts_the_reference_face_at_102_px_per_unit():
    """A face whose five landmarks are an exact (orthographic, upright) projection of Deep3DFaceRecon's reference
    points lands in the 224 crop at (112 + 102 x, 111 - 102 y) of those points: align_img's rescale factor 102,
    and SGPN's y flips (``h - 1 - y`` in the image, ``224 - 1 - y`` back) which move it up by one pixel."""
    from facerest_cli.prior.d3dfr import align_matrix, reference_five

    ref = reference_five(loadmat(str(shared_file("weights", "prior3d", "similarity_Lm3D_all.mat")))["lm"])
    lm = np.stack([260 + 150 * ref[:, 0], 240 - 150 * ref[:, 1]], 1)
    m = align_matrix(lm, ref, (512, 640))
    p = lm @ m[:, :2].T + m[:, 2]
    want = np.stack([112 + 102 * ref[:, 0], 111 - 102 * ref[:, 1]], 1)
    assert np.abs(p - want).max() < 0.5  # int() of the scaled image size shifts the crop by < 0.5 px
    assert p[0, 0] < p[1, 0] and p[0, 1] < p[3, 1]  # detector order kept: image-left eye first, eyes above mouth


def test_bfm09_render_lands_on_the_face_in_the_crop(front_model):
    """The render chain D3DFR crop -> image -> restorer crop, with an untrained D3DFR (all coefficients 0:
    the mean face, centred in the 224 crop): the rendered disc is where the 224 crop's centre maps to."""
    from facerest_cli.align.templates import template_points
    from facerest_cli.align.warp import estimate_similarity
    from facerest_cli.io.decode import decode_image
    from facerest_cli.models.d3dfr import d3dfr_resnet50
    from facerest_cli.prior.bfm09 import Bfm09
    from facerest_cli.prior.d3dfr import D3dfr, reference_five
    from facerest_cli.prior.render import get_renderer
    from facerest_cli.prior.sgpn import SgpnPriorBuilder, compose
    from facerest_cli.types import invert_affine

    px = decode_image(shared_file("images", "insightface", "t1.jpg")).pixels
    lm5 = np.array([[1181.7, 317.8], [1212.4, 316.9], [1198.8, 339.6], [1184.2, 356.4], [1210.2, 355.9]])
    crop_m = estimate_similarity(lm5, template_points("ffhq512", 512))
    ref = reference_five(loadmat(str(shared_file("weights", "prior3d", "similarity_Lm3D_all.mat")))["lm"])
    from facerest_cli.registry import from_network
    from facerest_cli.weights.registry import load_registry

    d3 = D3dfr(from_network("d3dfr", load_registry(), d3dfr_resnet50()), ref)
    builder = SgpnPriorBuilder(d3, get_renderer("torch"), 512, bfm09=Bfm09.from_mat(front_model))
    (p,) = builder.build([px], [lm5], [crop_m])
    assert p.source == "bfm09" and np.abs(p.coeff).max() == 0.0  # untrained head: the mean face
    mask = p.render.max(2) > 0
    ys, xs = np.nonzero(mask)
    _, mats = d3.crops([px], [lm5])
    a = compose(crop_m, invert_affine(mats[0]))
    centre = a @ np.array([112.0, 112.0, 1.0])
    assert np.hypot(xs.mean() - centre[0], ys.mean() - centre[1]) < 3.0
    colour = p.render[mask].mean(0)
    assert np.allclose(colour, 150 * math.pi / math.sqrt(4 * math.pi) * 0.8 / 255, atol=0.01)

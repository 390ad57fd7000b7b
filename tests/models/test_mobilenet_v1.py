"""3DDFA_V2 MobileNetV1: golden equivalence (mb1) and the real mb05 file (strict load, landmarks on a real face)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import shared_file, weights_file
from tests.models.golden import run_equivalence


def test_mb1_matches_official_golden(tmp_path):
    def call(net, g):
        assert str(g["call"]).startswith("param = net(x)")
        return {"param": net(torch.from_numpy(g["input"]))}

    errs = run_equivalence("3ddfa_v2_mb1_120x120", "3ddfa-mb1", call, tmp_path)
    assert set(errs) == {"param"}


@pytest.fixture(scope="module")
def mb05():
    from facerest_cli.weights.loader import load_model
    from facerest_cli.weights.registry import load_registry

    return load_model(load_registry().get("3ddfa-mb05"), weights_file("prior3d", "mb05_120x120.pth"))


def test_real_mb05_loads_strictly(mb05):
    from facerest_cli.weights.loader import torch_load_safe

    raw = torch_load_safe(weights_file("prior3d", "mb05_120x120.pth"))["state_dict"]
    # Everything in the file but the unused 136-d landmark head ends up in the module.
    assert len(mb05.state_dict()) == len(raw) - 2
    assert mb05.conv1.out_channels == 16 and mb05.fc.in_features == 512
    assert torch.equal(mb05.fc.weight, raw["module.fc_param.weight"])


def _landmarks68(net: torch.nn.Module, crops_bgr: np.ndarray) -> np.ndarray:
    """68 sparse landmarks ``(B, 68, 2)`` in 120x120 crop pixels, as 3DDFA_V2 reconstructs them."""
    from facerest_cli.weights.loader import numpy_pickle_load_safe

    ms = numpy_pickle_load_safe(weights_file("prior3d", "param_mean_std_62d_120x120.pkl"))
    u = np.loadtxt(weights_file("prior3d", "3ddfa_v1", "u_base.txt"))
    w_shp = np.loadtxt(weights_file("prior3d", "3ddfa_v1", "w_shp_base.txt"))
    w_exp = np.loadtxt(weights_file("prior3d", "3ddfa_v1", "w_exp_base.txt"))
    x = torch.from_numpy(((crops_bgr.astype(np.float32) - 127.5) / 128.0).transpose(0, 3, 1, 2).copy())
    with torch.inference_mode():
        params = net(x).double().numpy() * ms["std"] + ms["mean"]
    out = []
    for p in params:
        cam = p[:12].reshape(3, 4)
        pts = cam[:, :3] @ (u + w_shp @ p[12:52] + w_exp @ p[52:]).reshape(-1, 3).T + cam[:, 3:]
        # 3DDFA_V2 similar_transform: 1-based -> 0-based x, image y grows downwards.
        out.append(np.stack([pts[0] - 1.0, 120.0 - pts[1]], axis=1))
    return np.stack(out)


def test_real_mb05_landmarks_follow_the_face(mb05):
    img = cv2.imread(str(shared_file("images", "gfpgan", "cropped_faces", "Adele_crop.png")))
    det = cv2.FaceDetectorYN.create(str(weights_file("detection", "yunet_s_640_640.onnx")), "", (512, 512))
    _, faces = det.detect(img)
    yunet5 = faces[0, 4:14].reshape(5, 2) * (120.0 / 512.0)
    crop = cv2.resize(img, (120, 120), interpolation=cv2.INTER_AREA)
    shifted = cv2.warpAffine(crop, np.float32([[1, 0, 8], [0, 1, -5]]), (120, 120), borderMode=cv2.BORDER_REFLECT)

    lm, lm_shifted = _landmarks68(mb05, np.stack([crop, shifted]))
    five = np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])
    err = np.linalg.norm(five - yunet5, axis=1)
    iod = np.linalg.norm(yunet5[1] - yunet5[0])  # ~30 px
    # Measured 1.0-3.6 px against YuNet's landmarks.
    assert err.max() < 0.2 * iod and err.mean() < 0.1 * iod, err
    # Moving the face moves the landmarks with it.
    np.testing.assert_allclose((lm_shifted - lm).mean(0), [8.0, -5.0], atol=1.5)


def test_batch_matches_single_calls(mb05):
    x = torch.randn(2, 3, 120, 120, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        both = mb05(x)
        single = torch.cat([mb05(x[:1]), mb05(x[1:])])
    assert both.shape == (2, 62)
    assert float((both - single).norm() / single.norm()) <= 1e-5

"""Recognizers: preprocessing matches insightface, the ONNX path, names and fallbacks, licences."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli, weights_file


def _faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)


def test_blob_is_insightface_blob():
    """arcface-r50 preprocessing: exactly insightface ArcFaceONNX.get_feat's blobFromImages call."""
    import cv2

    from facerest_cli.identity.recognizers import arcface_blob

    u8 = _faces(3)
    ref = cv2.dnn.blobFromImages(list(u8), 1.0 / 127.5, (112, 112), (127.5, 127.5, 127.5), swapRB=True)
    ours = arcface_blob(u8.astype(np.float32) / 255.0)
    assert ours.shape == ref.shape == (3, 3, 112, 112) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=2e-6)
    # mxnet exports normalise inside the graph: raw 0-255 RGB.
    np.testing.assert_allclose(arcface_blob(u8.astype(np.float32) / 255.0, 0.0, 1.0), u8[..., ::-1].transpose(0, 3, 1, 2), atol=1e-4)


def _tiny_onnx(path, batch, first_nodes=("Flatten_0",)):
    """A stand-in for w600k_r50.onnx: (N, 3, 112, 112) -> (N, 8) by a fixed linear map."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(1).standard_normal((3 * 112 * 112, 8)).astype(np.float32)
    nodes = []
    cur = "input.1"
    if "Sub_0" in first_nodes:
        nodes += [helper.make_node("Sub", [cur, "zero"], ["s"], name="Sub_0"), helper.make_node("Mul", ["s", "one"], ["m"], name="Mul_1")]
        cur = "m"
    nodes += [helper.make_node("Flatten", [cur], ["flat"], name="Flatten_0", axis=1), helper.make_node("MatMul", ["flat", "W"], ["683"], name="MatMul_0")]
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.zeros(1, np.float32), "zero"), numpy_helper.from_array(np.ones(1, np.float32), "one")]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [batch, 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, [batch, 8])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return w


@pytest.mark.parametrize("batch", ["None", 1])
def test_onnx_recognizer_embeds_batches(tmp_path, batch):
    from facerest_cli.identity.recognizers import OnnxArcFace, arcface_blob

    w = _tiny_onnx(tmp_path / "tiny.onnx", batch)
    rec = OnnxArcFace(tmp_path / "tiny.onnx", "tiny")
    assert rec.fixed_batch == (1 if batch == 1 else None) and (rec.mean, rec.std) == (127.5, 127.5)
    faces = _faces(5).astype(np.float32) / 255.0
    e = rec.embed(faces)
    raw = arcface_blob(faces).reshape(5, -1) @ w
    np.testing.assert_allclose(e.norms, np.linalg.norm(raw, axis=1), rtol=1e-4)
    np.testing.assert_allclose(e.vectors, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(e.vectors, axis=1), 1.0, atol=1e-6)


def test_onnx_norm_follows_insightface_rule(tmp_path):
    from facerest_cli.identity.recognizers import onnx_input_norm

    _tiny_onnx(tmp_path / "mx.onnx", "None", first_nodes=("Sub_0",))
    _tiny_onnx(tmp_path / "pt.onnx", "None")
    assert onnx_input_norm(tmp_path / "mx.onnx") == (0.0, 1.0)
    assert onnx_input_norm(tmp_path / "pt.onnx") == (127.5, 127.5)


def test_not_an_onnx_file_is_a_weights_error(tmp_path):
    from facerest_cli.errors import WeightsError
    from facerest_cli.identity.recognizers import OnnxArcFace

    bad = tmp_path / "w600k_r50.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="w600k_r50.onnx"):
        OnnxArcFace(bad)


def test_torch_recognizer_matches_the_bare_network():
    import torch

    from facerest_cli.identity.recognizers import TorchRecognizer, arcface_blob
    from facerest_cli.models.iresnet import IResNet

    torch.manual_seed(0)
    net = IResNet((1, 1, 1, 1)).eval()  # iResNet code path, a fraction of r50's cost
    faces = _faces(3).astype(np.float32) / 255.0
    with torch.inference_mode():
        ref = net(torch.from_numpy(arcface_blob(faces))).numpy()
    from facerest_cli.registry import from_network
    from facerest_cli.weights.registry import load_registry

    e = TorchRecognizer(from_network("arcface-iresnet50", load_registry(), net)).embed(faces)
    assert e.vectors.shape == (3, 512)
    np.testing.assert_allclose(e.vectors, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-4)


def test_mobilefacenet_is_the_real_file_and_128d():
    from facerest_cli.identity.recognizers import build_recognizer
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    weights_file("recognition", "arcface_mobilefacenet.pth")
    rec = build_recognizer("arcface-mobilefacenet", WeightsStore(WeightsConfig.from_env(offline=True)))
    e = rec.embed(_faces(2).astype(np.float32) / 255.0)
    assert e.vectors.shape == (2, 128) and rec.name == "arcface-mobilefacenet"


def test_auto_and_names(tmp_path, monkeypatch):
    from facerest_cli.errors import UsageError, WeightsMissingError
    from facerest_cli.identity.recognizers import build_recognizer, resolve
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    store = WeightsStore(WeightsConfig.from_env(offline=True))
    assert resolve("auto", store) == "arcface-mobilefacenet"  # arcface-r50 is not installed here
    assert resolve("none", store) is None and resolve("arcface-r50", store) == "arcface-r50"
    with pytest.raises(UsageError, match="unknown recognizer 'facenet'"):
        resolve("facenet", store)
    monkeypatch.setenv("FACEREST_WEIGHTS_DIR", str(tmp_path))  # nothing installed, offline
    bare = WeightsStore(WeightsConfig.from_env(offline=True))
    with pytest.raises(WeightsMissingError):
        build_recognizer("arcface-r50", bare)


def test_auto_offline_without_weights_skips_identity_with_a_reason(tmp_path, monkeypatch):
    from facerest_cli.config import IdentityConfig, RunConfig
    from facerest_cli.errors import WeightsMissingError
    from facerest_cli.identity.stage import build_identity_stage
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    monkeypatch.setenv("FACEREST_WEIGHTS_DIR", str(tmp_path))
    store = WeightsStore(WeightsConfig.from_env(offline=True))
    stage = build_identity_stage(RunConfig(inputs=(tmp_path,), identity=IdentityConfig()), store, "cpu")
    assert stage.recognizer is None and "arcface-mobilefacenet" in stage.skipped
    s = stage.summary()
    assert s.key == "identity" and s.to_json() == {"model": None, "skipped": stage.skipped}
    # Asked for by name, or with a guard: never silently without identity.
    for icfg in (IdentityConfig(recognizer="arcface-mobilefacenet"), IdentityConfig(min_identity=0.5)):
        with pytest.raises(WeightsMissingError):
            build_identity_stage(RunConfig(inputs=(tmp_path,), identity=icfg), store, "cpu")


def test_bad_identity_options_are_usage_errors(tmp_path):
    from facerest_cli.config import IdentityConfig
    from facerest_cli.errors import UsageError

    with pytest.raises(UsageError, match="--min-identity must be a cosine"):
        IdentityConfig(min_identity=1.5)
    from tests.conftest import run_images, shared_file

    with pytest.raises(UsageError, match="unknown recognizer 'vggface'"):  # checked against the registry, before any image
        run_images(shared_file("images", "insightface", "t1.jpg"), tmp_path / "o", restorer_name="none",
                   identity=IdentityConfig(recognizer="vggface"))
    assert not (tmp_path / "o" / "t1.jpg").exists()
    with pytest.raises(UsageError, match="retry factors"):
        IdentityConfig(retry_factors=(0.5, 0.75))


def test_weights_list_marks_arcface_r50_non_commercial():
    proc = run_cli("weights", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["arcface-r50"]["non_commercial"] is True and rows["arcface-r50"]["role"] == "recognizer"
    assert rows["arcface-mobilefacenet"]["non_commercial"] is False
    table = run_cli("weights", "list")
    line = next(ln for ln in table.stdout.splitlines() if "arcface-r50" in ln)
    assert "non-commercial" in line

"""LPIPS v0.1 (vgg, alex) against the official lpips 0.1.4 on real faces: make_checkpoint backbones written as
torchvision's flat files and loaded strictly through the real loader; the REAL linear layers, found in the
weights store by their sha256."""

from __future__ import annotations

import pytest
import torch

from facerest_cli.errors import WeightsError
from tests.models.golden import (
    assert_close_to_golden,
    assert_state_dict_matches_manifest,
    check_rng_fingerprint,
    golden,
    manifest,
    write_official_checkpoint,
)


def _outputs(net, g) -> dict[str, torch.Tensor]:
    """The golden's documented call, val, res = LPIPS(in0, in1, retPerLayer=True), plus its diagnostics."""
    in0, in1 = torch.from_numpy(g["in0"]), torch.from_numpy(g["in1"])
    with torch.inference_mode():
        val, per_layer = net(in0, in1)
        f0, f1 = net.features(in0), net.features(in1)
        diffs = [(net.normalize(a) - net.normalize(b)) ** 2 for a, b in zip(f0, f1)]
    out = {"lpips": val.reshape(-1, 1, 1, 1), "per_layer": per_layer,
           "baseline_per_layer": torch.stack([d.sum(dim=1).mean(dim=[1, 2]) for d in diffs], dim=1)}
    out.update({f"diff{k}": d for k, d in enumerate(diffs)})
    out.update({f"feat{k}_in0": f for k, f in enumerate(f0)})
    return out


def _check(entry_name: str, manifest_name: str, backbone, store) -> dict[str, float]:
    from facerest_cli.metrics.lpips import build_lpips
    from facerest_cli.models.registry import build_arch

    check_rng_fingerprint(manifest_name)
    entry = store.registry.get(entry_name)
    assert_state_dict_matches_manifest(build_arch(entry.arch, init_weights=False), manifest_name)  # classifier too
    head = store.locate(entry_name, entry.files[1].name)
    assert head is not None and store.status(entry_name, entry.files[1].name).state == "verified"
    net = build_lpips(entry, backbone, head)
    assert not net.training
    errs = assert_close_to_golden(_outputs(net, golden(manifest_name)), manifest_name)
    assert set(errs) >= {"lpips", "per_layer", "baseline_per_layer"}
    return errs


def test_lpips_alex_matches_official(standin_files, metric_store):
    errs = _check("lpips-alex", "torchvision_alexnet", standin_files["torchvision_alexnet"], metric_store)
    assert errs["lpips"] <= 1e-4


@pytest.mark.slow
def test_lpips_vgg_matches_official(tmp_path, metric_store):
    ckpt = write_official_checkpoint("torchvision_vgg16", tmp_path / manifest("torchvision_vgg16")["checkpoint_file"])
    errs = _check("lpips-vgg", "torchvision_vgg16", ckpt, metric_store)
    assert errs["lpips"] <= 1e-4


def test_backbone_load_is_strict_like_torchvision(metric_store):
    """torchvision loads the ImageNet file strictly into the whole model, classifier included: a file without
    the classifier, or with LPIPS' own renamed keys, is refused (named), not half-loaded."""
    from facerest_cli.models.registry import build_arch
    from facerest_cli.weights.loader import load_state_dict_exact
    from tests.models.golden import make_checkpoint_module

    sd = make_checkpoint_module().make_state_dict(manifest("torchvision_alexnet"), 0)
    net = build_arch("alexnet", init_weights=False)
    features_only = {k: v for k, v in sd.items() if k.startswith("features.")}
    with pytest.raises(WeightsError, match=r"alexnet-owt.pth: does not match architecture AlexNet: 6 missing"):
        load_state_dict_exact(net, features_only, "alexnet-owt.pth")
    renamed = {k.replace("features.0.", "net.slice1.0."): v for k, v in sd.items()}
    with pytest.raises(WeightsError, match="2 missing .* 2 unexpected"):
        load_state_dict_exact(net, renamed, "alexnet-owt.pth")


def test_lpips_of_an_image_with_itself_is_zero_and_grows_with_blur(standin_files, metric_store):
    import cv2

    from facerest_cli.metrics.lpips import build_lpips, lpips_distance
    from tests.conftest import shared_file

    entry = metric_store.registry.get("lpips-alex")
    net = build_lpips(entry, standin_files["torchvision_alexnet"], metric_store.locate("lpips-alex", entry.files[1].name))
    ref = cv2.resize(cv2.imread(str(shared_file("images", "gpen", "ffhq-10", "00003.png"))), (256, 256), interpolation=cv2.INTER_AREA)
    blurred = [cv2.GaussianBlur(ref, (0, 0), s) for s in (1.0, 2.0, 4.0)]
    d = lpips_distance(net, [ref] + blurred, [ref] * 4)
    assert d[0] == 0.0
    assert 0 < d[1] < d[2] < d[3]

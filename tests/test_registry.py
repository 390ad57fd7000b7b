"""The model registry, timm-style: every weights.toml entry resolves to an architecture with a builder and a
call adapter, a known template, and evidence that it computes what the official network computes (a golden
test against ../shared/checkpoint-formats or a forward pass on the real weights in ../shared)."""

from __future__ import annotations

import pytest

from facerest_cli.align.templates import TEMPLATES
from facerest_cli.models.arch import ArchSpec, ExternalArch
from facerest_cli.models.registry import arch_spec
from facerest_cli.weights.registry import load_registry

REGISTRY = load_registry()

# torch arch -> the test that proves it equal to the official network (a golden manifest, or real weights).
EVIDENCE = {
    "gfpgan_v1_clean": "tests/models/test_gfpgan.py (gfpgan_v1.4 golden)",
    "codeformer": "tests/models/test_codeformer.py (codeformer golden)",
    "gpen_bfr_512": "tests/models/test_gpen.py (gpen_bfr_512 golden)",
    "restoreformer_pp": "tests/models/test_restoreformer.py (restoreformer_pp golden)",
    "sgpn": "tests/models/test_sgpn.py (sgpn golden)",
    "bisenet": "tests/models/test_bisenet.py (parsing_bisenet golden)",
    "parsenet": "tests/models/test_parsenet.py (parsing_parsenet golden)",
    "retinaface_mnet": "tests/models/test_retinaface.py (retinaface_mobilenet0.25 golden)",
    "retinaface_mnet_1mb": "tests/models/test_retinaface.py (real ../shared weights)",
    "retinaface_r50": "tests/models/test_retinaface.py (retinaface_resnet50 golden)",
    "d3dfr_resnet50": "tests/models/test_d3dfr.py (deep3dfacerecon_resnet50 golden)",
    "tddfa_mb1": "tests/models/test_mobilenet_v1.py (3ddfa_v2_mb1_120x120 golden)",
    "tddfa_mb05": "tests/models/test_mobilenet_v1.py (real ../shared weights)",
    "arcface_iresnet50": "tests/models/test_iresnet.py (arcface_iresnet50 golden)",
    "arcface_iresnet100": "tests/models/test_iresnet.py (arcface_iresnet100 golden)",
    "mobilefacenet": "tests/models/test_mobilefacenet.py (real ../shared weights)",
    "difface_unet": "tests/models/test_iddpm_unet.py (difface_iddpm_ffhq512 golden)",
    "tdiffusion_unet": "tests/models/test_iddpm_unet.py (tdiffusion_unet golden)",
    "difface_swinir": "tests/models/test_swinir.py (difface_swinir golden)",
    "realesrgan_x2plus": "tests/models/test_rrdbnet.py (realesrgan_x2plus golden)",
    "realesrgan_x4plus": "tests/models/test_rrdbnet.py (realesrgan_x4plus golden)",
    "realesr_general_x4v3": "tests/models/test_srvgg.py (realesr_general_x4v3 golden)",
    "vgg16": "tests/metrics/test_lpips.py (lpips_vgg golden)",
    "alexnet": "tests/metrics/test_lpips.py (lpips_alex golden)",
    "fid_inception_v3": "tests/metrics/test_fid.py (fid_inception_v3 golden)",
}


@pytest.mark.parametrize("entry", list(REGISTRY), ids=lambda e: e.name)
def test_every_entry_has_an_architecture_adapter_template_and_evidence(entry):
    for f in entry.files:  # a second network in the entry (DifFace's SwinIR) needs the same proof
        if f.arch:
            assert isinstance(arch_spec(f.arch), ArchSpec) and f.arch in EVIDENCE, f"{entry.name}/{f.name}: {f.arch}"
    spec = arch_spec(entry.arch)
    if entry.template:
        assert entry.template in TEMPLATES, f"{entry.name}: unknown template {entry.template!r}"
    if isinstance(spec, ExternalArch):
        assert spec.runtime in ("onnx", "data")
        return
    assert isinstance(spec, ArchSpec) and callable(spec.build) and callable(spec.call)
    assert entry.arch in EVIDENCE, f"{entry.name}: no golden or real-weights test proves {entry.arch} (add one)"
    path = EVIDENCE[entry.arch].split(" ")[0]
    from tests.conftest import REPO

    assert (REPO / path).is_file(), path
    if entry.role in ("restorer", "parser"):
        assert entry.input.size and entry.input.mean and entry.input.std, f"{entry.name}: no input normalisation"


def test_restorer_choices_derive_from_the_registry():
    from facerest_cli.restore.registry import restorer_names

    assert restorer_names(REGISTRY) == ["none", *[e.name for e in REGISTRY.by_role("restorer")]]


def test_a_fragment_adds_entries_but_never_replaces_one(tmp_path):
    from facerest_cli.errors import WeightsError

    (tmp_path / "a.toml").write_text('[gfpgan-1.4]\nrole = "restorer"\narch = "gfpgan_v1_clean"\nlicense = "x"\n'
                                     'source = "x"\n[["gfpgan-1.4".files]]\nname = "a.pth"\nurl = ["https://e/a.pth"]\n')
    with pytest.raises(WeightsError, match="already defines 'gfpgan-1.4'"):
        load_registry(model_dir=tmp_path)


def test_normalisation_comes_from_the_entry():
    """The [-1, 1] restorers, ImageNet parsers and 0-255 detectors are all ``(p * value_range - mean) / std``."""
    import torch

    from facerest_cli.registry import normalise, spec

    x = torch.tensor([0.0, 0.25, 1.0]).view(1, 1, 1, 3).expand(1, 3, 1, 3)
    assert normalise(x, spec("gfpgan-1.4", REGISTRY).input)[0, 0, 0].tolist() == [-1.0, -0.5, 1.0]
    bisenet = normalise(x, spec("bisenet", REGISTRY).input)[0, :, 0, 0]
    assert torch.allclose(bisenet, -torch.tensor([0.485, 0.456, 0.406]) / torch.tensor([0.229, 0.224, 0.225]))
    assert normalise(x, spec("retinaface-r50", REGISTRY).input)[0, :, 0, 2].tolist() == [255 - 104.0, 255 - 117.0, 255 - 123.0]

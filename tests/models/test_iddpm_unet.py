"""The DifFace and 3Diffusion UNets against the official goldens, and wrong files refused by the strict loader."""

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


def _load(manifest_name: str, entry_name: str, tmp_path):
    """make_checkpoint file in the official layout -> the generic strict loader (entry arch, first file)."""
    from facerest_cli.weights.loader import load_model
    from facerest_cli.weights.registry import load_registry

    check_rng_fingerprint(manifest_name)
    entry = load_registry().get(entry_name)
    ckpt = write_official_checkpoint(manifest_name, tmp_path / manifest(manifest_name)["checkpoint_file"])
    net = load_model(entry, ckpt)
    assert not net.training
    assert_state_dict_matches_manifest(net, manifest_name)
    assert list(net.state_dict()) == [row[0] for row in manifest(manifest_name)["tensors"]]
    return net, ckpt


@pytest.fixture(scope="module")
def difface(tmp_path_factory):
    return _load("difface_iddpm_ffhq512", "difface", tmp_path_factory.mktemp("difface"))


def test_difface_unet_matches_the_official_golden(difface):
    net, _ = difface
    g = golden("difface_iddpm_ffhq512")
    assert str(g["call"]).startswith("out = net(x_t, torch.tensor([99])); out_t40 = net(x_t, torch.tensor([40]))")
    x = torch.from_numpy(g["input"])
    with torch.inference_mode():
        outs = {"output": net(x, torch.from_numpy(g["t"])), "output_t40": net(x, torch.from_numpy(g["t2"]))}
    errs = assert_close_to_golden(outs, "difface_iddpm_ffhq512")
    assert max(errs.values()) <= 1e-4  # measured 7.2e-7


def test_tdiffusion_unet_matches_the_official_golden(tmp_path):
    net, _ = _load("tdiffusion_unet", "3diffusion", tmp_path)
    assert net.threed and len(net.lq_blocks) == 12 and len(net.cross_list) == 4
    g = golden("tdiffusion_unet")
    assert str(g["call"]).startswith("out = net(torch.cat([x_t, threeD, threeD], 1), torch.tensor([99]))")
    x_t, render = torch.from_numpy(g["input_x_t"]), torch.from_numpy(g["input_threeD"])
    assert torch.equal(torch.cat([x_t, render, render], 1), torch.from_numpy(g["input"]))
    from facerest_cli.restore.diffusion import unet_call

    with torch.inference_mode():
        out = unet_call(net, x_t, torch.from_numpy(g["t"]), render)  # the runtime's call builds that cat
    errs = assert_close_to_golden({"output": out}, "tdiffusion_unet")
    assert errs["output"] <= 1e-4  # measured 1.5e-6


def test_the_difface_unet_file_is_refused_as_3diffusion_naming_the_keys(difface, tmp_path):
    """Acceptance 4: a file of another architecture is refused, never partially loaded."""
    from facerest_cli.restore.diffusion import load_network_file
    from facerest_cli.weights.loader import load_model
    from facerest_cli.weights.registry import load_registry

    _, difface_ckpt = difface
    entry = load_registry().get("3diffusion")
    with pytest.raises(WeightsError) as e:
        load_network_file(entry, entry.files[0], difface_ckpt)
    msg = str(e.value)
    assert str(difface_ckpt) in msg and "does not match architecture UNetModel" in msg
    # The 3D branch is what the DifFace file lacks: 214 keys (manifest rows 844 - 630), named.
    assert "214 missing (e.g. lq_blocks.0.0.weight" in msg
    with pytest.raises(WeightsError, match="214 missing"):
        load_model(entry, difface_ckpt)  # the generic loader says the same

    # A file with keys of both kinds: SwinIR's, imported as the 3Diffusion UNet.
    swinir = write_official_checkpoint("difface_swinir", tmp_path / "General_Face_ffhq512.pth")
    with pytest.raises(WeightsError) as e:
        load_network_file(entry, entry.files[0], swinir)
    msg = str(e.value)
    assert "844 missing (e.g. time_embed.0.weight" in msg and "732 unexpected (e.g. conv_first.1.weight" in msg


@pytest.mark.slow
def test_a_face_gets_the_same_bits_in_any_position_of_a_fixed_size_batch(difface):
    """What DiffusionRestorer's fixed-size UNet calls rely on, at the real size: position does not matter."""
    net, _ = difface
    g = golden("difface_iddpm_ffhq512")
    a = torch.from_numpy(g["input"])
    b = torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([99, 99])
    with torch.inference_mode():
        ab = net(torch.cat([a, b]), t)
        ba = net(torch.cat([b, a]), t)
    assert torch.equal(ab[0], ba[1]) and torch.equal(ab[1], ba[0])
    assert assert_close_to_golden({"output": ab[:1]}, "difface_iddpm_ffhq512")["output"] <= 1e-4

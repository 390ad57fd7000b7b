"""weights.toml per-file ``arch``: an entry of two networks says which file loads into which architecture."""

from __future__ import annotations

import pytest

from facerest_cli.errors import WeightsError
from facerest_cli.models.arch import ArchSpec
from facerest_cli.models.registry import arch_spec
from facerest_cli.weights.registry import load_registry, parse_registry

_TWO = (
    '[a]\nrole = "restorer"\narch = "difface_unet"\nlicense = "x"\nsource = "x"\n'
    '[[a.files]]\nname = "unet.pth"\nurl = ["https://example.org/u.pth"]\n'
    '[[a.files]]\nname = "ir.pth"\narch = ARCH\nurl = ["https://example.org/s.pth"]\n'
)


def test_a_file_can_name_its_own_arch():
    e = parse_registry(_TWO.replace("ARCH", '"difface_swinir"')).get("a")
    assert e.arch == "difface_unet"
    assert (e.files[0].arch, e.files[1].arch) == ("", "difface_swinir")  # "" = the entry's arch


def test_a_file_arch_must_be_a_string():
    with pytest.raises(WeightsError, match=r"a\]\.files\[1\]\.arch: expected str, got int"):
        parse_registry(_TWO.replace("ARCH", "3"), "broken.toml")


def test_every_file_arch_in_the_shipped_registry_has_a_builder():
    named = [(e.name, f.name, f.arch) for e in load_registry() for f in e.files if f.arch]
    assert ("difface", "swinir_restoration512_L1.pth", "difface_swinir") in named
    assert ("3diffusion", "General_Face_ffhq512.pth", "difface_swinir") in named
    for entry, file, arch in named:
        assert isinstance(arch_spec(arch), ArchSpec), f"{entry}/{file}: arch {arch!r} is no torch architecture"

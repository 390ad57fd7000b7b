"""The shipped weights.toml: schema, the entries the issue asks for, facts it must agree with, broken variants."""

from __future__ import annotations

import csv
import hashlib

import pytest

from facerest_cli.errors import WeightsError
from facerest_cli.models.registry import ARCHS as ALL_ARCHS
from facerest_cli.weights.registry import ROLES, load_registry, parse_registry
from tests.conftest import FORMATS, REPO, WEIGHTS

REQUIRED = {
    "detector": {"yunet", "retinaface-mnet", "retinaface-r50", "scrfd-10g", "scrfd-500m"},
    "recognizer": {"arcface-r50", "arcface-mobilefacenet"},
    "restorer": {"gfpgan-1.3", "gfpgan-1.4", "codeformer", "gpen-bfr-512", "restoreformer-pp", "sgpn"},
    "parser": {"bisenet", "parsenet"},
    "prior": {"3ddfa-mb1", "3ddfa-mb05", "d3dfr"},
    "morphable-model": {"bfm-noneck-v3", "bfm09"},
}


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def test_shipped_file_is_the_package_data_and_parses(registry):
    assert load_registry(REPO / "weights.toml").entries == registry.entries
    assert len(registry) >= sum(len(v) for v in REQUIRED.values())


def test_every_entry_has_valid_fields(registry):
    for e in registry:
        assert e.role in ROLES, e.name
        assert e.arch in ALL_ARCHS, f"{e.name}: arch {e.arch!r} has no builder"
        assert e.license and e.source, e.name
        assert all(r in registry for r in e.requires), e.name
        for f in e.files:
            assert f.url or e.user_import_only, f"{e.name}/{f.name} has no url"
            assert all(u.startswith("https://") for u in f.url), f"{e.name}/{f.name}: plain http"
            assert not f.member or (f.archive_name and f.archive_sha256 and f.archive_size), f"{e.name}/{f.name}"
            assert not f.sha256 or f.size, f"{e.name}/{f.name}: a known hash comes with its size"


def test_the_issue_entries_exist_with_their_roles(registry):
    for role, names in REQUIRED.items():
        for n in names:
            assert registry.get(n).role == role, n
    assert registry.get("bfm09").user_import_only
    assert set(registry.get("sgpn").requires) == {"d3dfr", "bfm09"}
    assert registry.get("arcface-r50").non_commercial
    member = {e.name: e.file() for e in registry if e.file().member}
    assert member["scrfd-10g"].member == "det_10g.onnx" and member["arcface-r50"].member == "w600k_r50.onnx"
    assert member["scrfd-10g"].archive_name == member["arcface-r50"].archive_name == "buffalo_l.zip"


def test_hashes_agree_with_known_hashes_tsv(registry):
    rows = list(csv.DictReader((FORMATS / "known-hashes.tsv").open(encoding="utf-8"), delimiter="\t"))
    trusted = {r["filename"]: r for r in rows if r["confidence"] in ("high", "medium")}
    low = {r["filename"] for r in rows if r["confidence"] == "low"}
    checked = 0
    for e in registry:
        for f in e.files:
            if f.name in trusted:
                assert f.sha256 == trusted[f.name]["sha256"], f"{e.name}/{f.name}"
                assert f.size == int(trusted[f.name]["bytes"]), f"{e.name}/{f.name}"
                checked += 1
            if f.archive_name in trusted:
                assert f.archive_sha256 == trusted[f.archive_name]["sha256"], f"{e.name}/{f.archive_name}"
            if f.name in low:
                assert f.sha256 == "", f"{e.name}/{f.name}: a low-confidence hash must be pinned on first use"
    assert checked >= 13  # every release file of ours the tsv lists


def test_files_we_hold_have_their_real_hash_and_size(registry):
    """Every file in ../shared/weights that a registry file is named after (or aliased to) verifies."""
    by_name = {}
    for e in registry:
        for f in e.files:
            for n in (f.name, *f.aliases):
                by_name.setdefault(n, []).append((e, f))
    matched = 0
    for p in sorted(WEIGHTS.rglob("*")):
        if not p.is_file() or p.name not in by_name:
            continue
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        for e, f in by_name[p.name]:
            assert digest in f.accepted_sha256, f"{p} does not verify as {e.name}/{f.name}"
            assert f.size == p.stat().st_size or f.alt_sha256, f"{e.name}/{f.name} size"
            matched += 1
    assert matched >= 15


def _base(extra: str = "") -> str:
    return (
        '[a]\nrole = "detector"\narch = "yunet"\nlicense = "MIT"\nsource = "x"\n' + extra
        + '[[a.files]]\nname = "a.onnx"\nurl = ["https://example.org/a.onnx"]\nsha256 = ""\n'
    )


def test_a_valid_minimal_registry_parses():
    assert parse_registry(_base()).get("a").file().name == "a.onnx"


@pytest.mark.parametrize(
    "text, message",
    [
        (_base().replace('sha256 = ""', "size = \"12\""), "a].files[0].size: expected int, got str"),
        (_base('requires = ["nope"]\n'), "a].requires: 'nope' is not an entry"),
        (_base() + _base(), "not valid TOML"),
        (_base().replace('role = "detector"', 'role = "upscaler"'), "a].role: expected one of"),
        (_base().replace('sha256 = ""', 'sha256 = "abc"'), "sha256: expected 64 lowercase hex digits"),
        (_base().replace('url = ["https://example.org/a.onnx"]', "url = []"), "has no url"),
        (_base('requires = "b"\n'), "requires: expected list"),
        (_base('colour = "rgb"\n'), "unknown field 'colour'"),
    ],
    ids=[
        "wrong-type", "unresolvable-requires", "duplicate-table", "bad-role",
        "bad-hash", "no-url", "requires-type", "unknown-field",
    ],
)
def test_broken_registries_are_rejected_with_a_clear_message(text, message):
    with pytest.raises(WeightsError) as e:
        parse_registry(text, "broken.toml")
    assert message in str(e.value)

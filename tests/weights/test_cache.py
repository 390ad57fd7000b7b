"""WeightsStore: search order, cached verification, corruption, zip members, offline errors, export/import."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile

import pytest

from facerest_cli.errors import WeightsError, WeightsMissingError
from facerest_cli.weights.cache import WeightsConfig, WeightsStore
from tests.conftest import WEIGHTS
from tests.weights.conftest import entry_toml, make_store, one_file, payload, sha


def test_shared_weights_are_found_in_extra_dirs_without_copying(tmp_path):
    store = WeightsStore(WeightsConfig(home=tmp_path / "w", extra_dirs=(WEIGHTS,)))
    # yunet by its alias, the rest by name; biubug6's RetinaFace file is its own entry, not facexlib's
    assert store.locate("yunet") == WEIGHTS / "detection" / "yunet_s_640_640.onnx"
    assert store.locate("retinaface-mnet-1mb") == WEIGHTS / "detection" / "mobilenet0.25_Final.pth"
    assert store.locate("retinaface-mnet") is None
    for name in ("scrfd-500m", "arcface-mobilefacenet", "3ddfa-mb05", "3ddfa-config", "bfm-sparse68"):
        assert store.state(name) == "verified", name
    assert store.locate("gfpgan-1.4") is None
    assert not (tmp_path / "w" / "yunet").exists()


def test_verification_is_cached_and_a_changed_file_is_corrupt(tmp_path, monkeypatch):
    data = payload(50_000)
    store = make_store(tmp_path, one_file("m", "m.bin", ["https://e.org/m"], data))
    src = tmp_path / "m.bin"
    src.write_bytes(data)
    [res] = store.import_paths([src])
    assert res.action == "installed"
    dest = store.home_path("m", "m.bin")

    import facerest_cli.weights.cache as cache_mod

    hashed = []
    real = cache_mod.sha256_file
    monkeypatch.setattr(cache_mod, "sha256_file", lambda p: hashed.append(p) or real(p))
    fresh = make_store(tmp_path, one_file("m", "m.bin", ["https://e.org/m"], data))
    assert fresh.locate("m") == dest and hashed == []  # .verified.json answered

    # Same size, one byte flipped, new mtime: re-hashed and refused.
    st = dest.stat()
    dest.write_bytes(b"\x00" + data[1:])
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    status = fresh.status("m")
    assert hashed == [dest]
    assert status.state == "corrupt" and sha(data) in status.detail and status.sha256 in status.detail
    assert fresh.locate("m") is None


def test_offline_missing_file_names_everything_and_opens_no_socket(no_network):
    t0 = time.monotonic()
    store = WeightsStore(WeightsConfig.from_env(offline=True))
    with pytest.raises(WeightsMissingError) as e:
        store.ensure("gfpgan-1.4")
    assert time.monotonic() - t0 < 2.0
    msg = str(e.value)
    f = store.registry.get("gfpgan-1.4").file()
    for part in ("gfpgan-1.4", f.name, f.url[0], f.sha256, f"facerest weights import {f.name}", "--offline"):
        assert part in msg, part
    assert "\n" not in msg
    assert no_network == []
    assert e.value.exit_code == 2


def test_user_import_only_and_requires(tmp_path):
    store = WeightsStore(WeightsConfig(home=tmp_path / "w", extra_dirs=(WEIGHTS,)))
    assert [e.name for e in store.closure("sgpn")] == ["sgpn", "d3dfr", "bfm09"]
    with pytest.raises(WeightsMissingError, match="cannot be downloaded.*weights import 01_MorphableModel.mat"):
        store.ensure("bfm09")
    offline = WeightsStore(WeightsConfig(home=tmp_path / "w", extra_dirs=(WEIGHTS,), offline=True))
    paths = offline.ensure_all("3ddfa-mb05")
    assert set(paths) == {"3ddfa-mb05/mb05_120x120.pth", "3ddfa-config/param_mean_std_62d_120x120.pkl"}


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_zip_members_are_extracted_alone_and_the_archive_dropped(tmp_path, http_server):
    det, rec = payload(40_000, 1), payload(60_000, 2)
    pack = _zip({"det.onnx": det, "rec.onnx": rec, "../evil.txt": b"escaped", "/abs.txt": b"escaped"})
    http_server.files["pack.zip"] = pack
    common = {"archive_name": "pack.zip", "archive_sha256": sha(pack), "archive_size": len(pack)}
    common["url"] = [http_server.url("pack.zip")]
    text = "".join(
        entry_toml(n, [{"name": f"{n}.onnx", "member": f"{n}.onnx", "sha256": sha(d), "size": len(d)} | common])
        for n, d in (("det", det), ("rec", rec))
    )
    store = make_store(tmp_path, text)
    assert store.ensure("det", progress=False).read_bytes() == det
    assert store.state("rec") == "verified"  # one download serves every member the registry knows
    assert len(http_server.hits("pack.zip")) == 1
    assert not (store.config.home / "_archives" / "pack.zip").exists()
    assert not list(tmp_path.rglob("evil.txt")) and not list(tmp_path.rglob("abs.txt"))
    assert sorted(p.name for p in store.config.home.rglob("*") if p.is_file() and not p.name.startswith(".")) == [
        "det.onnx", "det.onnx.lock", "pack.zip.lock", "rec.onnx", "rec.onnx.lock",
    ]


def test_zip_member_with_a_path_escape_is_refused(tmp_path, http_server):
    pack = _zip({"../evil.txt": b"escaped"})
    http_server.files["pack.zip"] = pack
    text = entry_toml("bad", [{
        "name": "evil.txt", "member": "../evil.txt", "archive_name": "pack.zip", "archive_sha256": sha(pack),
        "archive_size": len(pack), "url": [http_server.url("pack.zip")], "sha256": sha(b"escaped"), "size": 7,
    }])
    store = make_store(tmp_path, text)
    with pytest.raises(WeightsError, match="refused, a member name must be a relative path"):
        store.ensure("bad", progress=False)
    assert not list(tmp_path.rglob("evil.txt"))


def test_export_then_import_sets_up_an_air_gapped_cache(tmp_path):
    source = WeightsStore(WeightsConfig(home=tmp_path / "a", extra_dirs=(WEIGHTS,)))
    usb = tmp_path / "usb"
    rows = source.export(usb)
    exported = {(r["entry"], r["file"]) for r in rows}
    assert ("yunet", "face_detection_yunet_2023mar.onnx") in exported and ("bfm-noneck-v3", "tri.pkl") in exported
    manifest = json.loads((usb / "manifest.json").read_text())
    assert len(manifest["files"]) == len(rows) == len((usb / "SHA256SUMS").read_text().splitlines())

    target = WeightsStore(WeightsConfig(home=tmp_path / "b", offline=True))
    results = target.import_paths([usb])
    assert {r.action for r in results} <= {"installed", "skipped"}
    for entry, file in exported:
        st = target.status(entry, file)
        assert st.state == "verified" and st.path == target.home_path(entry, file), (entry, file)


def test_a_name_shared_by_two_entries_is_not_guessed(tmp_path):
    text = entry_toml("r50", [{"name": "backbone.pth", "url": ["https://e.org/a"], "sha256": ""}])
    text += entry_toml("r100", [{"name": "backbone.pth", "url": ["https://e.org/b"], "sha256": ""}])
    store = make_store(tmp_path, text)
    loose = tmp_path / "dl" / "backbone.pth"
    loose.parent.mkdir()
    loose.write_bytes(b"r100 weights")
    [res] = store.import_paths([loose])
    assert res.action == "refused" and "--as" in res.detail
    assert store.state("r50") == store.state("r100") == "missing"
    # The export layout <entry>/<file> names the entry.
    exported = tmp_path / "usb" / "r100" / "backbone.pth"
    exported.parent.mkdir(parents=True)
    exported.write_bytes(b"r100 weights")
    [res] = store.import_paths([tmp_path / "usb"])
    assert (res.action, res.entry) == ("installed", "r100")
    assert store.state("r100") == "pinned" and store.state("r50") == "missing"
    assert "--as r100" in store.missing_message(store.registry.get("r100"), store.registry.get("r100").file(), "x")

"""``facerest weights ...`` end to end: import of ../shared/weights (acceptance 2), offline failures that open no
socket (acceptance 3), list/verify/path/remove, user-pinned imports, and an import that stays cheap."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

from typer.testing import CliRunner

from facerest_cli.cli import app
from facerest_cli.weights.registry import load_registry
from tests.conftest import REPO, WEIGHTS, shared_file
from tests.weights.conftest import one_file, payload, sha, write_registry

runner = CliRunner()


def listing(env: dict | None = None) -> dict[tuple[str, str], dict]:
    result = runner.invoke(app, ["weights", "list", "--json"], env=env)
    assert result.exit_code == 0, result.output
    return {(r["name"], r["file"]): r for r in json.loads(result.stdout)}


def test_import_shared_weights_recognises_every_file_by_hash(monkeypatch, _isolated_home):
    monkeypatch.delenv("FACEREST_WEIGHTS_DIR")
    shared = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in WEIGHTS.rglob("*") if p.is_file()}
    registry = load_registry()
    expected = {(e.name, f.name) for e in registry for f in e.files if set(f.accepted_sha256) & set(shared.values())}
    covered = {p.name for p, h in shared.items() if any(h in f.accepted_sha256 for e in registry for f in e.files)}
    # Every file we hold has an entry, except the MediaPipe mesh (a test fixture for the renderer only).
    assert {p.name for p in shared} - covered == {"canonical_face_model.obj"}
    before = listing()
    assert all(before[k]["state"] == "missing" for k in expected)

    result = runner.invoke(app, ["weights", "import", str(WEIGHTS)])
    assert result.exit_code == 0, result.output
    assert f"{len(expected)} installed" in result.stdout

    after = listing()
    home = _isolated_home / "weights"
    for key in expected:
        assert after[key]["state"] == "verified" and after[key]["label"] == "verified", key
        assert after[key]["path"] == str(home / key[0] / key[1])
    assert {k for k, r in after.items() if r["state"] != "missing"} == expected


def test_list_table_shows_licence_non_commercial_and_states():
    result = runner.invoke(app, ["weights", "list"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "arcface-r50" in line)
    assert "non-commercial" in row and "missing" in row
    yunet = next(line for line in result.stdout.splitlines() if line.lstrip("│ ").startswith("yunet"))
    assert "verified" in yunet and "MIT" in yunet
    assert listing()[("arcface-r50", "w600k_r50.onnx")]["non_commercial"] is True


def test_fetch_offline_exits_2_fast_with_the_import_command_and_no_socket(no_network):
    t0 = time.monotonic()
    result = runner.invoke(app, ["weights", "fetch", "gfpgan-1.4", "--offline"])
    elapsed = time.monotonic() - t0
    assert result.exit_code == 2, result.output
    f = load_registry().get("gfpgan-1.4").file()
    for part in ("gfpgan-1.4", f.name, f.url[0], f.sha256, f"facerest weights import {f.name}"):
        assert part in result.stderr, part
    assert elapsed < 2.0 and no_network == []


def test_run_offline_with_a_missing_restorer_exits_2_fast_and_opens_no_socket(tmp_path, no_network):
    image = shared_file("images", "gfpgan", "cropped_faces", "Adele_crop.png")
    t0 = time.monotonic()
    args = ["run", str(image), "-o", str(tmp_path / "out"), "--restorer", "gfpgan-1.4", "--offline"]
    result = runner.invoke(app, args)
    elapsed = time.monotonic() - t0
    assert result.exit_code == 2, result.output
    f = load_registry().get("gfpgan-1.4").file()
    for part in ("gfpgan-1.4", f.name, f.url[0], f.sha256, "facerest weights import"):
        assert part in result.stderr, part
    assert elapsed < 2.0, f"took {elapsed:.2f} s"
    assert no_network == []


def test_import_as_needs_trust_for_another_hash_and_then_shows_user_pinned(tmp_path, _isolated_home):
    converted = tmp_path / "my_gfpgan.pth"
    converted.write_bytes(payload(10_000))
    official = load_registry().get("gfpgan-1.4").file().sha256

    refused = runner.invoke(app, ["weights", "import", str(converted), "--as", "gfpgan-1.4"])
    assert refused.exit_code == 2
    assert official in refused.stderr and sha(converted.read_bytes()) in refused.stderr
    assert not (_isolated_home / "weights" / "gfpgan-1.4" / "GFPGANv1.4.pth").exists()

    trusted = runner.invoke(app, ["weights", "import", str(converted), "--as", "gfpgan-1.4", "--trust"])
    assert trusted.exit_code == 0, trusted.output
    assert "WARNING" in trusted.stderr and "TRUSTING" in trusted.stderr
    row = listing()[("gfpgan-1.4", "GFPGANv1.4.pth")]
    assert (row["state"], row["label"]) == ("user-pinned", "user-pinned (--trust)")
    lock = json.loads((_isolated_home / "weights" / "weights.lock").read_text())
    assert lock["files"]["gfpgan-1.4/GFPGANv1.4.pth"]["kind"] == "user"


def test_pinned_on_first_use_is_not_shown_as_verified(tmp_path, http_server):
    data = payload(20_000)
    http_server.files["g.pth"] = data
    reg = write_registry(tmp_path, one_file("g", "g.pth", [http_server.url("g.pth")]))
    env = {"FACEREST_REGISTRY": str(reg)}
    fetched = runner.invoke(app, ["weights", "fetch", "g", "--no-progress"], env=env)
    assert fetched.exit_code == 0, fetched.output
    row = listing(env)[("g", "g.pth")]
    assert (row["state"], row["label"]) == ("pinned", "pinned on first use")
    assert "pinned on first use" in runner.invoke(app, ["weights", "list"], env=env).stdout


def test_verify_rehashes_and_catches_what_the_cache_would_miss(tmp_path, _isolated_home):
    data = payload(30_000)
    reg = write_registry(tmp_path, one_file("v", "v.bin", ["https://e.org/v"], data))
    env = {"FACEREST_REGISTRY": str(reg)}
    (tmp_path / "v.bin").write_bytes(data)
    assert runner.invoke(app, ["weights", "import", str(tmp_path / "v.bin")], env=env).exit_code == 0
    assert runner.invoke(app, ["weights", "verify"], env=env).exit_code == 0
    # Corrupt it in place and put the old mtime back: only a re-hash can tell.
    dest = _isolated_home / "weights" / "v" / "v.bin"
    st = dest.stat()
    dest.write_bytes(data[:-1] + b"\x00")
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert listing(env)[("v", "v.bin")]["state"] == "verified"  # the cached verdict
    result = runner.invoke(app, ["weights", "verify"], env=env)
    assert result.exit_code == 2 and "CORRUPT" in result.stdout and "1 corrupt file" in result.stderr


def test_path_and_remove(tmp_path):
    shared = WEIGHTS / "detection" / "yunet_s_640_640.onnx"
    assert runner.invoke(app, ["weights", "path", "yunet"]).stdout.strip() == str(shared)
    assert runner.invoke(app, ["weights", "import", str(WEIGHTS / "prior3d" / "mb05_120x120.pth")]).exit_code == 0
    env = {"FACEREST_WEIGHTS_DIR": ""}
    home_copy = runner.invoke(app, ["weights", "path", "3ddfa-mb05"], env=env).stdout.strip()
    assert home_copy.endswith("3ddfa-mb05/mb05_120x120.pth")
    assert runner.invoke(app, ["weights", "remove", "3ddfa-mb05"], env=env).exit_code == 0
    missing = runner.invoke(app, ["weights", "path", "3ddfa-mb05"], env=env)
    assert missing.exit_code == 2 and "facerest weights fetch 3ddfa-mb05" in missing.stderr
    assert (WEIGHTS / "prior3d" / "mb05_120x120.pth").exists()  # extra dirs are never touched


def test_importing_the_cli_opens_no_socket_and_loads_no_torch():
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise SystemExit('network used at import time')\n"
        "socket.socket.connect = refuse; socket.create_connection = refuse; socket.getaddrinfo = refuse\n"
        "import facerest_cli\n"
        "assert 'torch' not in sys.modules and 'cv2' not in sys.modules, 'import facerest_cli is not light'\n"
        "import facerest_cli.cli, facerest_cli.weights.cache, facerest_cli.weights.download\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'cv2' not in sys.modules, 'cv2 imported'\n"
        "import facerest_cli.engines\n"
        "assert 'ray' not in sys.modules, 'ray imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr

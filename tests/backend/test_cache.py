"""The compiled-model cache: no second conversion, corrupt/stale/deleted entries rebuilt with the same outputs,
atomic writes, list/clear/remove, and the CLI commands. Real network: arcface-mobilefacenet (../shared weights)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from facerest_cli.backend.cache import MANIFEST, CompiledCache
from tests.backend.nets import build

runner = CliRunner()


@pytest.fixture()
def cache(tmp_path, mobilefacenet_entry) -> CompiledCache:
    """A fresh cache holding a copy of the session's converted mobilefacenet entry (no conversion here)."""
    root = tmp_path / "compiled"
    dest = root / mobilefacenet_entry.parent.name / mobilefacenet_entry.name
    shutil.copytree(mobilefacenet_entry, dest)
    return CompiledCache(root)


class CountingFactory:
    """A ``TensorCall`` factory that counts how often the torch module was asked for."""

    def __init__(self, loaded):
        from facerest_cli.backend.calls import arch_call
        from facerest_cli.backend.wrap import TensorCall

        ac = arch_call(loaded.arch)
        self.make = lambda: TensorCall(loaded.net, ac.fn, **ac.options)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.make()


def _entry(cache: CompiledCache) -> Path:
    (entry,) = [e.path for e in cache.entries()]
    return entry


def test_second_build_does_not_convert_and_never_loads_torch_weights(mobilefacenet, caps, tmp_path):
    cache = CompiledCache(tmp_path / "compiled")
    first = build(mobilefacenet, "openvino", "fp32", caps, cache)
    assert cache.conversions == 1 and first.info.source == "converted"
    factory = CountingFactory(mobilefacenet)
    again = CompiledCache(tmp_path / "compiled")  # a second run: a new process would build a new cache object
    second = build(mobilefacenet, "openvino", "bf16", caps, again, call=factory)  # precision shares the IR
    assert again.conversions == 0 and second.info.source == "cache" and factory.calls == 0
    assert second.info.cache_dir == first.info.cache_dir
    (x,) = mobilefacenet.inputs
    assert torch.equal(build(mobilefacenet, "openvino", "fp32", caps, again, call=factory)(x), first(x))
    assert again.conversions == 0 and factory.calls == 0


@pytest.mark.parametrize("damage", ["delete-bin", "corrupt-bin", "truncate-xml", "delete-manifest", "stale-key"])
def test_damaged_entry_is_rebuilt_with_the_same_outputs(cache, mobilefacenet, caps, damage):
    entry = _entry(cache)
    key = json.loads((entry / MANIFEST).read_text())["key"]
    (x,) = mobilefacenet.inputs
    before = build(mobilefacenet, "openvino", "fp32", caps, cache)(x)
    assert cache.conversions == 0
    if damage == "delete-bin":
        (entry / "model.bin").unlink()
    elif damage == "corrupt-bin":  # same size, one byte flipped: only the hash can tell
        data = bytearray((entry / "model.bin").read_bytes())
        data[len(data) // 2] ^= 0x55
        (entry / "model.bin").write_bytes(bytes(data))
    elif damage == "truncate-xml":
        (entry / "model.xml").write_bytes((entry / "model.xml").read_bytes()[:1000])
    elif damage == "delete-manifest":
        (entry / MANIFEST).unlink()
    else:  # a manifest written for another key (e.g. another OpenVINO version) at this entry's path
        m = json.loads((entry / MANIFEST).read_text())
        m["key"]["openvino"] = "0.0.0"
        (entry / MANIFEST).write_text(json.dumps(m))
    assert cache.verify(entry, key) != ""
    factory = CountingFactory(mobilefacenet)
    after = build(mobilefacenet, "openvino", "fp32", caps, cache, call=factory)
    assert cache.conversions == 1 and cache.rebuilt == 1 and factory.calls == 1
    assert after.info.source == "converted" and Path(after.info.cache_dir) == entry
    assert torch.equal(after(x), before)
    assert len(cache.events) == 1 and str(entry) in cache.events[0]
    # and the rebuilt entry is itself valid: the next build uses it
    assert build(mobilefacenet, "openvino", "fp32", caps, cache).info.source == "cache" and cache.conversions == 1


def test_manifest_records_every_file_hash_and_the_key(cache):
    entry = _entry(cache)
    m = json.loads((entry / MANIFEST).read_text())
    assert set(m["files"]) == {"model.xml", "model.bin"}
    import hashlib

    for name, meta in m["files"].items():
        assert meta["sha256"] == hashlib.sha256((entry / name).read_bytes()).hexdigest()
        assert meta["size"] == (entry / name).stat().st_size
    key = m["key"]
    assert key["arch"] == "mobilefacenet" and len(key["weights_sha256"]) == 64
    assert key["inputs"] == [{"shape": [1, 3, 112, 112], "dynamic": [], "dtype": "float32"}]
    assert {"openvino", "torch", "facerest", "code", "call"} <= set(key)
    assert cache.verify(entry, key) == ""


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    cache = CompiledCache(tmp_path / "c")
    key = {"k": 1}

    def boom(folder: Path) -> None:
        (folder / "model.xml").write_text("partial")
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError, match="conversion failed"):
        cache.get_or_build("m", "openvino", key, boom)
    assert cache.entries() == [] and cache.conversions == 0
    assert [p.name for p in (tmp_path / "c" / "m").iterdir() if not p.name.endswith(".lock")] == []

    def ok(folder: Path) -> None:
        (folder / "a.bin").write_bytes(b"x" * 10)

    entry, built = cache.get_or_build("m", "openvino", key, ok)
    assert built and cache.conversions == 1 and cache.get_or_build("m", "openvino", key, boom) == (entry, False)


def test_remove_model_and_clear(cache, tmp_path):
    other = CompiledCache(cache.root)
    other.get_or_build("gfpgan-1.4", "openvino", {"k": 2}, lambda f: (f / "x.bin").write_bytes(b"1"))
    assert sorted(e.model for e in cache.entries()) == ["arcface-mobilefacenet", "gfpgan-1.4"]
    assert len(cache.remove_model("gfpgan-1.4")) == 1 and cache.remove_model("gfpgan-1.4") == []
    assert [e.model for e in cache.entries()] == ["arcface-mobilefacenet"]
    assert len(cache.clear()) == 1 and cache.entries() == [] and cache.root.is_dir()


def test_cli_cache_list_clear_and_weights_remove(_isolated_home, mobilefacenet_entry):
    from facerest_cli.cli import app

    root = _isolated_home / "compiled"
    shutil.copytree(mobilefacenet_entry, root / "arcface-mobilefacenet" / mobilefacenet_entry.name)
    shutil.copytree(mobilefacenet_entry, root / "gfpgan-1.4" / mobilefacenet_entry.name)
    listed = runner.invoke(app, ["cache", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.stdout)
    assert data["root"] == str(root)
    assert sorted(r["model"] for r in data["entries"]) == ["arcface-mobilefacenet", "gfpgan-1.4"]
    assert all(r["manifest_ok"] and r["size"] > 1_000_000 and r["backend"] == "openvino" for r in data["entries"])

    removed = runner.invoke(app, ["weights", "remove", "gfpgan-1.4"])
    assert removed.exit_code == 0, removed.output
    assert "1 compiled model(s)" in removed.stdout and not (root / "gfpgan-1.4").exists()

    cleared = runner.invoke(app, ["cache", "clear", "--json"])
    assert cleared.exit_code == 0, cleared.output
    out = json.loads(cleared.stdout)
    assert len(out["removed"]) == 1 and out["bytes"] > 1_000_000
    assert json.loads(runner.invoke(app, ["cache", "list", "--json"]).stdout)["entries"] == []
    text = runner.invoke(app, ["cache", "clear"])
    assert text.exit_code == 0 and "removed 0 compiled model(s)" in text.stdout

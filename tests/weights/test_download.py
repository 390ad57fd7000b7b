"""Acceptance 1: verified downloads against a real HTTP server on 127.0.0.1 (good, wrong hash, cut and resumed,
404 then mirror, HTML page, stalled server), plus first-use pinning and transient-error retries."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from facerest_cli.cli import app
from facerest_cli.errors import DownloadError
from tests.weights.conftest import entry_toml, make_store, payload, sha, write_registry

DATA = payload(300_000)


def tiny(server, urls: list[str], digest: str = sha(DATA), size: int = len(DATA)) -> str:
    return entry_toml("tiny", [{"name": "tiny.bin", "url": urls, "sha256": digest, "size": size}])


def test_good_download_is_verified_and_installed(tmp_path, http_server, monkeypatch):
    http_server.files["tiny.bin"] = DATA
    store = make_store(tmp_path, tiny(http_server, [http_server.url("tiny.bin")]))
    assert store.state("tiny") == "missing"
    path = store.ensure("tiny", progress=False)
    assert path == store.home_path("tiny", "tiny.bin")
    assert path.read_bytes() == DATA
    assert not path.with_name("tiny.bin.part").exists()
    assert store.state("tiny") == "verified"
    assert "range" not in http_server.hits("tiny.bin")[0]
    # The verification is cached by (path, size, mtime): a second look does not hash 300 kB again.
    calls = []
    monkeypatch.setattr("facerest_cli.weights.cache.sha256_file", lambda p: calls.append(p) or "0" * 64)
    assert store.locate("tiny") == path and calls == []
    assert len(http_server.hits("tiny.bin")) == 1


def test_wrong_sha256_exits_nonzero_installs_nothing_and_shows_both_hashes(tmp_path, http_server, monkeypatch):
    http_server.files["tiny.bin"] = DATA
    wrong = sha(b"the file the registry expects")
    reg = write_registry(tmp_path, tiny(http_server, [http_server.url("tiny.bin")], digest=wrong))
    home = tmp_path / "home"
    env = {"FACEREST_REGISTRY": str(reg), "FACEREST_HOME": str(home), "FACEREST_DOWNLOAD_RETRIES": "0"}
    result = CliRunner().invoke(app, ["weights", "fetch", "tiny", "--no-progress"], env=env)
    assert result.exit_code == 2, result.output
    assert wrong in result.stderr and sha(DATA) in result.stderr
    assert "mismatch" in result.stderr
    target = home / "weights" / "tiny" / "tiny.bin"
    assert not target.exists()
    assert not target.with_name("tiny.bin.part").exists()


def test_cut_connection_leaves_part_and_next_fetch_resumes_with_range(tmp_path, http_server):
    http_server.files["tiny.bin"] = DATA
    http_server.modes["tiny.bin"] = "cut-once"
    store = make_store(tmp_path, tiny(http_server, [http_server.url("tiny.bin")]), retries=0)
    with pytest.raises(DownloadError, match="closed before the end"):
        store.ensure("tiny", progress=False)
    dest = store.home_path("tiny", "tiny.bin")
    part = dest.with_name("tiny.bin.part")
    assert not dest.exists(), "a half file must never sit where the model is expected"
    kept = part.stat().st_size
    assert 0 < kept < len(DATA)

    path = store.ensure("tiny", progress=False)
    second = http_server.hits("tiny.bin")[1]
    assert second.get("range") == f"bytes={kept}-"
    assert path.read_bytes() == DATA and store.state("tiny") == "verified"
    assert not part.exists()


def test_cut_connection_is_resumed_within_one_fetch_by_a_retry(tmp_path, http_server):
    http_server.files["tiny.bin"] = DATA
    http_server.modes["tiny.bin"] = "cut-once"
    store = make_store(tmp_path, tiny(http_server, [http_server.url("tiny.bin")]), retries=2)
    assert store.ensure("tiny", progress=False).read_bytes() == DATA
    hits = http_server.hits("tiny.bin")
    assert len(hits) == 2 and hits[1]["range"].startswith("bytes=")


def test_404_on_first_mirror_then_second_mirror(tmp_path, http_server):
    http_server.files["tiny.bin"] = DATA
    urls = [http_server.url("gone/tiny.bin"), http_server.url("tiny.bin")]
    store = make_store(tmp_path, tiny(http_server, urls))
    assert store.ensure("tiny", progress=False).read_bytes() == DATA
    assert [p for p, _ in http_server.log] == ["gone/tiny.bin", "tiny.bin"]  # a 404 is not retried


@pytest.mark.parametrize("mode", ["html", "html-body"])
def test_html_page_instead_of_the_model_is_refused(tmp_path, http_server, mode):
    http_server.modes["uc"] = mode
    store = make_store(tmp_path, tiny(http_server, [http_server.url("uc")]))
    with pytest.raises(DownloadError, match="HTML page instead of the model"):
        store.ensure("tiny", progress=False)
    dest = store.home_path("tiny", "tiny.bin")
    assert not dest.exists() and not dest.with_name("tiny.bin.part").exists()
    assert len(http_server.hits("uc")) == 1  # an HTML page is not retried


def test_stalled_server_times_out_within_the_configured_limit(tmp_path, http_server):
    http_server.files["tiny.bin"] = DATA
    http_server.modes["tiny.bin"] = "stall"
    store = make_store(tmp_path, tiny(http_server, [http_server.url("tiny.bin")]), timeout_s=0.4, retries=1)
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match=r"stalled: no data for 0\.4 s"):
        store.ensure("tiny", progress=False)
    elapsed = time.monotonic() - t0
    assert elapsed < 2 * 0.4 + 1.5, f"two stalled attempts took {elapsed:.2f} s"
    assert len(http_server.hits("tiny.bin")) == 2
    assert not store.home_path("tiny", "tiny.bin").exists()


def test_transient_503_is_retried_with_backoff(tmp_path, http_server):
    http_server.files["tiny.bin"] = DATA
    http_server.modes["tiny.bin"] = "503-once"
    store = make_store(tmp_path, tiny(http_server, [http_server.url("tiny.bin")]), retries=1)
    assert store.ensure("tiny", progress=False).read_bytes() == DATA
    assert len(http_server.hits("tiny.bin")) == 2


def test_unknown_hash_is_pinned_on_first_use_and_enforced_after(tmp_path, http_server):
    http_server.files["tiny.bin"] = DATA
    url = http_server.url("tiny.bin")
    store = make_store(tmp_path, tiny(http_server, [url], digest="", size=0))
    store.ensure("tiny", progress=False)
    assert store.state("tiny") == "pinned"
    lock = json.loads((store.config.home / "weights.lock").read_text())
    assert lock["files"]["tiny/tiny.bin"] | {"pinned_at": ""} == {
        "sha256": sha(DATA), "size": len(DATA), "kind": "first-use", "source": url, "pinned_at": "",
    }
    # Upstream now serves other bytes: the pin refuses them.
    store.remove("tiny")
    http_server.files["tiny.bin"] = payload(300_000, seed=1)
    with pytest.raises(DownloadError, match=f"expected {sha(DATA)}"):
        store.ensure("tiny", progress=False)
    assert store.state("tiny") == "missing"


def test_proxy_settings_come_from_the_environment(tmp_path, http_server, monkeypatch):
    # The test server plays a forward proxy: it receives the absolute URL of a host that does not exist.
    for v in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{http_server.port}")
    url = "http://weights.invalid/tiny.bin"
    http_server.files[url] = DATA
    store = make_store(tmp_path, tiny(http_server, [url]))
    assert store.ensure("tiny", progress=False).read_bytes() == DATA
    assert len(http_server.hits(url)) == 1

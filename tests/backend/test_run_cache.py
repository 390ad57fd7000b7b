"""The compiled-model cache through `facerest run` with the default backend (issue 13, acceptance 3): the second
run converts nothing; a deleted or corrupted cache file is rebuilt, with the same outputs."""

from __future__ import annotations

import pytest

import json

from tests.conftest import read_jsonl, run_cli, shared_file

# OpenVINO, the precision policy: what a user gets without options (tests default to torch fp32: conftest).
DEFAULTS = {"FACEREST_BACKEND": "auto", "FACEREST_PRECISION": "auto"}


def _run(src, out, home):
    proc = run_cli("run", src, "-o", out, "--restorer", "none", "--mask", "feather", "--quiet",
                   env={**DEFAULTS, "FACEREST_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    backend = {r["model"]: r for r in json.loads((out / "summary.json").read_text())["backend"]}
    cosines = [r["identity"]["cosine"] for r in read_jsonl(out / "report.jsonl")]
    return backend, cosines


@pytest.mark.slow  # a whole run or a full-size network: CI runs it, `make test-fast` skips it
def test_second_run_converts_nothing_and_a_damaged_entry_is_rebuilt(tmp_path):
    src = shared_file("images", "insightface", "t1.jpg")
    home = tmp_path / "home"
    first, cos1 = _run(src, tmp_path / "o1", home)
    assert {r["backend"] for r in first.values()} == {"openvino"}
    assert {"3ddfa-mb05", "arcface-mobilefacenet"} <= set(first)
    assert {r["source"] for r in first.values()} == {"converted"}
    second, cos2 = _run(src, tmp_path / "o2", home)
    assert {r["source"] for r in second.values()} == {"cache"}
    assert cos2 == cos1
    # Damage one entry two ways: a truncated weights file, then a missing graph file.
    (entry,) = (home / "compiled" / "arcface-mobilefacenet").glob("openvino-*")
    with open(entry / "model.bin", "r+b") as f:
        f.truncate(1000)
    third, cos3 = _run(src, tmp_path / "o3", home)
    assert third["arcface-mobilefacenet"]["source"] == "converted" and third["3ddfa-mb05"]["source"] == "cache"
    assert cos3 == cos1
    (entry,) = (home / "compiled" / "3ddfa-mb05").glob("openvino-*")
    (entry / "model.xml").unlink()
    fourth, cos4 = _run(src, tmp_path / "o4", home)
    assert fourth["3ddfa-mb05"]["source"] == "converted" and fourth["arcface-mobilefacenet"]["source"] == "cache"
    assert cos4 == cos1
    assert (tmp_path / "o4" / "t1.jpg").read_bytes() == (tmp_path / "o1" / "t1.jpg").read_bytes()

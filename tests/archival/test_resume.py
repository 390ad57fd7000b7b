"""--skip-existing / --resume semantics (issue 8): what counts as done, what is processed again, and how
report.jsonl, manifest.jsonl and summary.json are kept consistent."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from facerest_cli.errors import UsageError
from tests.archival._data import RUN_ARGS, fast_options, forty_images, jsonl_lines, small_photo, temp_files
from tests.conftest import run_cli


class Counting:
    """Passthrough restorer counting the crops it is given (to see what was processed again)."""

    name = "none"
    size = 512
    template = "ffhq512"
    needs_prior = False

    def __init__(self):
        self.crops = 0

    def __call__(self, faces, prior=None):
        self.crops += int(faces.shape[0])
        return faces


def _run(src, out, **kw):
    from tests.conftest import run_images

    r = Counting()
    res = run_images(src, out, restorer=r, **fast_options(), **kw)
    return res, r.crops


@pytest.fixture()
def done(tmp_path):
    """Four photos processed once: (input dir, output dir, first result)."""
    src = tmp_path / "in"
    forty_images(src, 4, side=240)
    out = tmp_path / "out"
    res, crops = _run(src, out)
    assert res.processed == 4 and crops == res.faces >= 4
    return src, out, res


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("flag", ["skip_existing", "resume"])
def test_complete_outputs_are_skipped_and_the_summary_covers_them(done, flag):
    src, out, first = done
    report = (out / "report.jsonl").read_bytes()
    outputs = {p.name: p.read_bytes() for p in out.glob("*.jpg")}
    res, crops = _run(src, out, **{flag: True})
    assert crops == 0 and res.processed == 4 and res.faces == first.faces and res.seen == 4
    s = _summary(out)
    assert s["resume"] == {"mode": flag.replace("_", "-"), "already_done": 4, "processed_again": {}}
    assert s["processed"] == 4 and s["faces"] == first.faces
    assert (out / "report.jsonl").read_bytes() == report
    assert {p.name: p.read_bytes() for p in out.glob("*.jpg")} == outputs


def test_changed_input_is_processed_again_without_duplicate_report_lines(done):
    src, out, first = done
    small_photo(240, "deepface/img30.jpg").save(src / "img02.jpg", quality=90)
    res, crops = _run(src, out, resume=True)
    assert _summary(out)["resume"]["processed_again"] == {"input changed": 1}
    assert crops >= 1 and res.processed == 4
    recs = jsonl_lines(out / "report.jsonl")
    keys = [(Path(r["source"]).name, r["face_index"]) for r in recs]
    assert len(keys) == len(set(keys)) == res.faces
    assert [k for k in keys if k[0] == "img02.jpg"] and keys[-1][0] == "img02.jpg"  # its lines were redone last
    assert len(jsonl_lines(out / "manifest.jsonl")) == 1 + 4


def test_touched_input_with_the_same_content_is_still_done(done):
    src, out, _ = done
    os.utime(src / "img01.jpg", ns=(1_000_000_000, 1_000_000_000))
    _res, crops = _run(src, out, skip_existing=True)
    assert crops == 0
    entry = [e for e in jsonl_lines(out / "manifest.jsonl")[1:] if e["rel"] == "img01.jpg"][0]
    assert entry["mtime_ns"] == 1_000_000_000  # the new mtime is recorded


def test_changed_options_process_again_but_neutral_ones_do_not(done):
    src, out, first = done
    _res, crops = _run(src, out, resume=True, batch_size=3, max_pixels=10**9)  # no effect on output bytes
    assert crops == 0
    res, crops = _run(src, out, resume=True, strength=0.5)
    assert crops == first.faces and _summary(out)["resume"]["processed_again"] == {"options changed": 4}
    assert len(jsonl_lines(out / "report.jsonl")) == first.faces
    # The header names the output-shaping options that differ from the defaults (device, batch size... do not).
    # (The test session pins --backend torch --precision fp32, and --restorer none is not the default.)
    assert jsonl_lines(out / "manifest.jsonl")[0]["options"] == {
        "restore": {"restorer": "none", "precision": "fp32", "backend": "torch", "strength": 0.5},
        "identity": {"recognizer": "none"}, "prior": {"prior": "off"}}


def test_missing_or_altered_outputs_are_redone(done):
    src, out, _ = done
    (out / "img00.jpg").unlink()
    p = out / "img03.jpg"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x55  # same size, different content
    p.write_bytes(bytes(data))
    _run(src, out, skip_existing=True)  # sizes only: the altered file passes, the missing one is redone
    assert _summary(out)["resume"]["processed_again"] == {"output missing or changed": 1}
    assert (out / "img00.jpg").exists() and (out / "img03.jpg").read_bytes() == bytes(data)
    _run(src, out, resume=True)  # SHA-256 of every output: the altered one is redone too
    assert _summary(out)["resume"]["processed_again"] == {"output missing or changed": 1}
    assert (out / "img03.jpg").read_bytes() != bytes(data)


def test_torn_lines_and_temp_files_of_a_killed_run_are_cleaned(done):
    src, out, first = done
    lines = (out / "manifest.jsonl").read_bytes().splitlines(keepends=True)
    # As if killed after img03's report lines but before its manifest line was complete:
    (out / "manifest.jsonl").write_bytes(b"".join(lines[:-1]) + lines[-1][:25])
    with open(out / "report.jsonl", "ab") as f:
        f.write(b'{"source":"' + str(src / "img03.jpg").encode() + b'","face_ind')
    (out / "sub").mkdir()
    (out / "sub" / ".facerest-0123abcd.tmp").write_bytes(b"half an image")
    res, crops = _run(src, out, resume=True)
    assert crops >= 1  # img03 again
    s = _summary(out)
    assert s["resume"]["already_done"] == 3 and s["stale_temp_files_removed"] == 1
    recs = jsonl_lines(out / "report.jsonl")
    assert len(recs) == first.faces == res.faces
    assert temp_files(out) == []


def test_a_plain_run_starts_the_manifest_afresh(done):
    src, out, first = done
    res, crops = _run(src, out)
    assert crops == first.faces
    m = jsonl_lines(out / "manifest.jsonl")
    assert m[0]["facerest_manifest"] == 1 and len(m) == 5
    assert len(jsonl_lines(out / "report.jsonl")) == first.faces
    assert "resume" not in _summary(out)


def test_manifest_records_hashes_sizes_and_options(done):
    import hashlib

    src, out, _ = done
    m = jsonl_lines(out / "manifest.jsonl")
    e = [x for x in m[1:] if x["rel"] == "img00.jpg"][0]
    inp = src / "img00.jpg"
    assert e["sha256"] == hashlib.sha256(inp.read_bytes()).hexdigest() and e["size"] == inp.stat().st_size
    assert e["mtime_ns"] == inp.stat().st_mtime_ns and e["options_hash"] == m[0]["options_hash"]
    (o,) = e["outputs"]
    assert o["path"] == "img00.jpg" and o["sha256"] == hashlib.sha256((out / "img00.jpg").read_bytes()).hexdigest()


def test_a_second_run_on_the_same_output_folder_is_refused(done, tmp_path):
    src, out, _ = done
    with open(out / ".facerest.lock", "a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UsageError, match="another facerest run is writing to"):
            _run(src, out, resume=True)
        proc = run_cli("run", src, "-o", out, *RUN_ARGS)
    assert proc.returncode == 2 and "another facerest run" in proc.stderr
    assert _summary(out)["status"] == "completed"  # the locked folder's summary was not touched

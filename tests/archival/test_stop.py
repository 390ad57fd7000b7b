"""Stopping cleanly (issue 8): Ctrl-C / SIGTERM -> exit 130 within seconds, summary status "interrupted", no partial
file; disk full (ENOSPC, simulated) -> exit 3 with one message, partial outputs removed, the rest complete and
resumable."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facerest_cli.errors import DiskFullError
from tests.archival._data import RUN_ARGS, cli_cmd, cli_env, decodes_fully, jsonl_lines, outputs_bytes, summary, temp_files
from tests.conftest import REPO


# Runs the real CLI with os.fsync failing with ENOSPC once `limit` JPEG outputs (temp files directly in the output
# folder) have been synced: from then on every fsync of a regular file (outputs, report, manifest, summary) fails,
# as on a full disk. Linux only (/proc/self/fd).
ENOSPC_BOOTSTRAP = r"""
import errno, os, stat, sys
limit, out_dir = int(sys.argv[1]), os.path.realpath(sys.argv[2])
real_fsync = os.fsync
synced = [0]
def fsync(fd):
    if stat.S_ISREG(os.fstat(fd).st_mode):
        if synced[0] >= limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        path = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.dirname(path) == out_dir and os.path.basename(path).startswith(".facerest-"):
            with open(path, "rb") as f:  # the temp file is open write-only
                synced[0] += f.read(3) == b"\xff\xd8\xff"
    return real_fsync(fd)
os.fsync = fsync
sys.argv = ["facerest", *sys.argv[3:]]
from facerest_cli.cli import main
main()
"""


def _default_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def _lines(path: Path) -> int:
    try:
        return max(0, path.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def _check_consistent(out: Path, ref_outputs: dict[str, bytes]) -> dict:
    """Whatever a stopped run left is complete: outputs equal the reference, the report parses, no temp files."""
    assert temp_files(out) == []
    outs = outputs_bytes(out)
    for name, data in outs.items():
        assert decodes_fully(data) and data == ref_outputs[name], name
    manifest = jsonl_lines(out / "manifest.jsonl")[1:]
    recorded = {e["outputs"][0]["path"] for e in manifest}
    assert recorded <= set(outs)
    recs = jsonl_lines(out / "report.jsonl")
    keys = [(r["source"], r["face_index"]) for r in recs]
    assert len(keys) == len(set(keys))
    return outs


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_within_seconds_with_status_interrupted(forty, tmp_path, sig):
    src, ref_outputs = forty.src, forty.outputs
    out = tmp_path / "out"
    # A shell without job control starts background commands with SIGINT ignored, and a child inherits that
    # (Python then never raises KeyboardInterrupt): give the CLI the default disposition a terminal gives it, so
    # the test checks facerest's answer to the signal, not how the test runner was started.
    p = subprocess.Popen(cli_cmd("run", src, "-o", out, *RUN_ARGS), env=cli_env(), cwd=str(REPO),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals)
    deadline = time.monotonic() + 240
    while _lines(out / "manifest.jsonl") < 3 and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert p.poll() is None, "the run finished before it could be interrupted"
    t0 = time.monotonic()
    p.send_signal(sig)
    _stdout, stderr = p.communicate(timeout=60)
    took = time.monotonic() - t0
    assert p.returncode == 130, stderr
    assert took < 5.0, f"took {took:.1f}s to stop"
    assert "Traceback" not in stderr
    s = summary(out)
    assert s["status"] == "interrupted" and 3 <= s["processed"] < 40
    outs = _check_consistent(out, ref_outputs)
    assert len(outs) >= s["processed"]


@pytest.mark.slow
def test_disk_full_stops_with_exit_3_and_the_run_resumes(forty, tmp_path):
    src, ref_outputs, ref_faces = forty.src, forty.outputs, len(forty.face_keys)
    out = tmp_path / "out"
    boot = tmp_path / "enospc.py"
    boot.write_text(ENOSPC_BOOTSTRAP)
    p = subprocess.run([sys.executable, str(boot), "12", out, "run", src, "-o", out, *RUN_ARGS], env=cli_env(), cwd=str(REPO),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 3, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("facerest: disk full while writing ") and "--resume" in lines[0]
    outs = _check_consistent(out, ref_outputs)
    assert len(outs) == 12  # the 13th output's temp file was removed when its fsync failed
    p = subprocess.run(cli_cmd("run", src, "-o", out, "--resume", *RUN_ARGS), env=cli_env(), cwd=str(REPO),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert outputs_bytes(out) == ref_outputs
    assert len(jsonl_lines(out / "report.jsonl")) == ref_faces
    s = summary(out)
    assert s["status"] == "completed" and s["processed"] == 40 and s["resume"]["already_done"] >= 11


def test_a_failed_report_append_leaves_no_torn_line(tmp_path, monkeypatch):
    from facerest_cli.report.jsonl import ReportWriter
    from facerest_cli.types import FaceRecord

    rec = FaceRecord(source="a.jpg", face_index=0, bbox=[0, 0, 1, 1], score=1.0, landmarks=[], face_size=1.0,
                     detector="d", restorer="r", strength=1.0, matrix=[])
    w = ReportWriter(tmp_path / "report.jsonl")
    w.write([rec])
    size = (tmp_path / "report.jsonl").stat().st_size

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFullError, match="disk full while writing"):
        w.write([rec, rec])
    w.close()
    assert (tmp_path / "report.jsonl").stat().st_size == size
    assert len(jsonl_lines(tmp_path / "report.jsonl")) == 1


def test_signals_ignored_at_start_stay_ignored():
    """`nohup facerest run ...` starts with SIGHUP ignored: closing the terminal must not stop the run. SIGTERM,
    not ignored, stops it as Ctrl-C does; both dispositions come back after the run."""
    from facerest_cli.cli._signals import stop_on_signals

    old_hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with stop_on_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)  # the handler runs at the next bytecode
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, old_hup)
        signal.signal(signal.SIGTERM, old_term)

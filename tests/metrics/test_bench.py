"""bench_eval: one row of images/s per metric group that can run, the others listed as skipped."""

from __future__ import annotations

import shutil

from facerest_cli.metrics.bench import bench_eval
from tests.conftest import shared_file


def test_bench_eval_rows(tmp_path):
    for name in ("00000.png", "00001.png"):
        shutil.copy(shared_file("images", "gpen", "ffhq-10", name), tmp_path / name)
    out = bench_eval(tmp_path, ["psnr", "ssim", "niqe"], batch_size=2)
    assert [r["metric"] for r in out["rows"]] == ["psnr", "ssim"]
    assert all(r["images"] == 2 and r["images_per_s"] > 0 for r in out["rows"])
    assert out["skipped"]["niqe"].endswith("run: facerest weights fetch niqe-params")  # fresh cache in tests

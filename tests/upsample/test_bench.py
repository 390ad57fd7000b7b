"""``bench_upsampler``: one row per device:precision, measured in a fresh process (its own peak RSS)."""

from __future__ import annotations


def test_bench_upsampler_reports_rate_and_peak_rss():
    from facerest_cli.upsample.bench import bench_upsampler

    r = bench_upsampler("realesr-general-x4v3", ["cpu:fp32", "cpu:fp16"], (24, 40), tile=16, tile_pad=2, overlap=4,
                        random_weights=True, threads=1)
    assert r["bench"] == "upsampler" and r["size"] == "40x24"
    ok, bad = r["rows"]
    assert ok["config"] == "cpu:fp32" and ok["weights"] == "random" and ok["net calls"] == 2  # 2 rows of 3 tiles
    assert ok["input MP/s"] > 0 and abs(ok["output MP/s"] / ok["input MP/s"] / 16 - 1) < 1e-3
    assert 50 < ok["peak RSS MiB"] < 4096
    assert "needs a GPU" in bad["error"]

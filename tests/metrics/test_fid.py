"""FID: pytorch-fid's Inception (FID blocks) through the real loader against the official pool3 features, and the
Frechet distance, statistics and their files against pytorch-fid's values (goldens/fid_*.npz)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facerest_cli.metrics.fid import FidStats, RunningStats, build_fid_inception, frechet_distance, stats_from_features
from tests.conftest import shared_file
from tests.models.golden import assert_close_to_golden, assert_state_dict_matches_manifest, check_rng_fingerprint, golden


def test_inception_pool3_matches_pytorch_fid(standin_files, metric_store):
    from facerest_cli.models.registry import build_arch

    check_rng_fingerprint("fid_inception_v3")
    entry = metric_store.registry.get("fid-inception")
    assert_state_dict_matches_manifest(build_arch(entry.arch), "fid_inception_v3")  # fc.* and BN counters too
    net = build_fid_inception(entry, standin_files["fid_inception_v3"])
    assert not net.training
    g = golden("fid_inception_v3")
    x = torch.from_numpy(g["input"])
    with torch.inference_mode():
        outs = {"pool3": net(x), "pool3_256": net(torch.from_numpy(g["input_256"]))}
        b0, b1, b2 = net.forward_blocks(x, (0, 1, 2))
    outs.update(blocks0=b0, blocks1=b1, blocks2=b2)
    errs = assert_close_to_golden(outs, "fid_inception_v3")
    assert errs["pool3"] <= 1e-4 and errs["pool3_256"] <= 1e-4


def test_file_without_batchnorm_counters_loads(standin_files, tmp_path, metric_store):
    """Whether the real pt_inception file stores BN num_batches_tracked is unknown (README); torch's strict load
    accepts both, so ours does: same features either way. A missing weight is still refused."""
    from facerest_cli.errors import WeightsError

    entry = metric_store.registry.get("fid-inception")
    sd = torch.load(standin_files["fid_inception_v3"], map_location="cpu", weights_only=True)
    no_counters = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert len(sd) - len(no_counters) == 94
    p = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(no_counters, p)
    a = build_fid_inception(entry, p).state_dict()
    b = build_fid_inception(entry, standin_files["fid_inception_v3"]).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    del no_counters["Mixed_7c.branch_pool.bn.running_var"]
    torch.save(no_counters, p)
    with pytest.raises(WeightsError, match="1 missing"):
        build_fid_inception(entry, p)


@pytest.fixture(scope="module")
def frechet():
    return np.load(shared_file("checkpoint-formats", "goldens", "fid_frechet_distance.npz"))


@pytest.mark.parametrize("t", ["a", "b"])
def test_frechet_distance_matches_pytorch_fid(frechet, t):
    g = frechet
    ref = float(g[f"fid_{t}"])
    for method in ("sqrtm", "eigh"):  # pytorch-fid's procedure, and the symmetric form eval uses
        given = frechet_distance(FidStats(g[f"mu1_{t}"], g[f"sigma1_{t}"]), FidStats(g[f"mu2_{t}"], g[f"sigma2_{t}"]),
                                 method=method)
        assert abs(given / ref - 1) <= 1e-6, method
    # Statistics recomputed from the features, whole and streamed in uneven batches.
    s1, s2 = stats_from_features(g[f"feats1_{t}"]), stats_from_features(g[f"feats2_{t}"])
    assert np.array_equal(s1.mu, g[f"mu1_{t}"]) and np.array_equal(s1.sigma, g[f"sigma1_{t}"])
    assert abs(frechet_distance(s1, s2) / ref - 1) <= 1e-6
    run1, run2 = RunningStats(), RunningStats()
    for lo, hi in ((0, 7), (7, 100), (100, 101), (101, len(g[f"feats1_{t}"]))):
        run1.update(g[f"feats1_{t}"][lo:hi])
        run2.update(g[f"feats2_{t}"][lo:hi])
    r1, r2 = run1.stats(), run2.stats()
    assert r1.n == len(g[f"feats1_{t}"])
    assert np.abs(r1.mu - g[f"mu1_{t}"]).max() <= 1e-12 * np.abs(g[f"mu1_{t}"]).max()
    assert np.abs(r1.sigma - g[f"sigma1_{t}"]).max() <= 1e-12 * np.abs(g[f"sigma1_{t}"]).max()
    assert abs(frechet_distance(r1, r2) / ref - 1) <= 1e-6


def test_stats_files_round_trip(frechet, tmp_path):
    s = stats_from_features(frechet["feats1_a"])
    s.save(tmp_path / "ref.npz")
    back = FidStats.load(tmp_path / "ref.npz")
    assert np.array_equal(back.mu, s.mu) and np.array_equal(back.sigma, s.sigma) and back.n == 512
    # BasicSR's statistics layout (inception_FFHQ_512-*.pth: dict(name, size, mean, cov)), read with the safe loader.
    torch.save({"name": "test", "size": 512, "mean": s.mu, "cov": s.sigma}, tmp_path / "inception_test.pth")
    other = FidStats.load(tmp_path / "inception_test.pth")
    assert np.array_equal(other.mu, s.mu) and np.array_equal(other.sigma, s.sigma)
    assert frechet_distance(back, back) == pytest.approx(0.0, abs=1e-9)

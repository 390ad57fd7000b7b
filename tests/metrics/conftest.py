"""Fixtures for the metric tests: make_checkpoint stand-ins written once in the official file layout, and a
weights home holding the real LPIPS / NIQE files (imported by hash) plus the stand-in backbones (imported with
--trust, as a user imports a converted checkpoint)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import WEIGHTS, shared_file
from tests.models.golden import manifest, write_official_checkpoint


@pytest.fixture(scope="session")
def standin_files(tmp_path_factory) -> dict[str, Path]:
    """AlexNet and FID-Inception stand-ins (make_checkpoint seed 0), written as the official flat files."""
    d = tmp_path_factory.mktemp("metric_standins")
    out = {}
    for name in ("torchvision_alexnet", "fid_inception_v3"):
        out[name] = write_official_checkpoint(name, d / manifest(name)["checkpoint_file"])
    return out


@pytest.fixture(scope="session")
def metric_home(tmp_path_factory, standin_files) -> Path:
    """A FACEREST_HOME with niqe-params and both LPIPS linear layers (real, by hash), lpips-alex's backbone and
    fid-inception (stand-ins, user-pinned). lpips-vgg's backbone is left missing."""
    import os

    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    home = tmp_path_factory.mktemp("metric_home")
    old = os.environ.get("FACEREST_HOME")
    os.environ["FACEREST_HOME"] = str(home)
    try:
        store = WeightsStore(WeightsConfig.from_env())
        real = store.import_paths([shared_file("checkpoint-formats", "metric-files")])
        assert sorted((r.entry, r.action) for r in real if r.action == "installed") == [
            ("lpips-alex", "installed"), ("lpips-vgg", "installed"), ("niqe-params", "installed")]
        for entry, key in (("lpips-alex", "torchvision_alexnet"), ("fid-inception", "fid_inception_v3")):
            f = standin_files[key]
            res = store.import_paths([f], as_name=entry, file=f.name, trust=True, warn=lambda m: None)
            assert [r.action for r in res] == ["installed"], res
    finally:
        if old is None:
            os.environ.pop("FACEREST_HOME", None)
        else:
            os.environ["FACEREST_HOME"] = old
    return home


@pytest.fixture
def use_metric_home(metric_home, monkeypatch) -> Path:
    monkeypatch.setenv("FACEREST_HOME", str(metric_home))
    monkeypatch.setenv("FACEREST_WEIGHTS_DIR", str(WEIGHTS))
    return metric_home


@pytest.fixture
def metric_store(use_metric_home):
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    return WeightsStore(WeightsConfig.from_env(offline=True))

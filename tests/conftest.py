"""Shared test fixtures. ../shared is test data every developer and CI has: a missing file there is a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEREST_SHARED_DIR", REPO.parent / "shared")).resolve()
WEIGHTS = Path(os.environ.get("FACEREST_WEIGHTS_DIR", SHARED / "weights")).resolve()
IMAGES = SHARED / "images"
FORMATS = SHARED / "checkpoint-formats"


def shared_file(*parts: str) -> Path:
    """A file under ../shared; fails (never skips) when it is missing, as CI requires."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.fail(f"missing shared test file {p} (../shared must sit beside the repo)")
    return p


def weights_file(*parts: str) -> Path:
    p = WEIGHTS.joinpath(*parts)
    if not p.exists():
        pytest.fail(f"missing shared weights file {p} (set FACEREST_WEIGHTS_DIR=../shared/weights)")
    return p


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own empty FACEREST_HOME (cache, lock file), and reads ../shared/weights read-only."""
    home = tmp_path_factory.mktemp("facerest_home")
    monkeypatch.setenv("FACEREST_HOME", str(home))
    monkeypatch.setenv("FACEREST_WEIGHTS_DIR", str(WEIGHTS))
    monkeypatch.delenv("FACEREST_OFFLINE", raising=False)
    yield home


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    """Deterministic CPU kernels for golden comparisons; TF32 never applies on CPU."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

"""Session-wide converted models: a conversion costs 5-30 s, so each network is converted once per session into
one shared cache folder and every test that needs it reuses that entry (or copies it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backend.nets import build


@pytest.fixture(scope="session")
def caps():
    from facerest_cli.backend.cpu import detect_cpu_caps

    return detect_cpu_caps()


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    from facerest_cli.backend.cache import CompiledCache

    return CompiledCache(tmp_path_factory.mktemp("compiled"))


@pytest.fixture(scope="session")
def mobilefacenet():
    """The real arcface-mobilefacenet weights from ../shared on four real aligned crops (112x112)."""
    from tests.backend.nets import mobilefacenet_net

    return mobilefacenet_net()


@pytest.fixture(scope="session")
def mobilefacenet_entry(mobilefacenet, session_cache, caps) -> Path:
    """Its converted IR entry in the session cache (converted here once)."""
    net = build(mobilefacenet, "openvino", "fp32", caps, session_cache)
    return Path(net.info.cache_dir)


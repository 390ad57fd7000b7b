"""Restorer names (``--restorer``) -> builders. ``none`` needs no weights; the others are weights.toml entries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from facerest_cli.config import RestoreConfig
from facerest_cli.errors import UsageError
from facerest_cli.restore.base import Passthrough, Restorer

if TYPE_CHECKING:
    from facerest_cli.weights.cache import WeightsStore

NETWORK_RESTORERS = ("gfpgan-1.4", "gfpgan-1.3", "codeformer", "gpen-bfr-512", "restoreformer-pp", "sgpn")
RESTORERS = ("none", *NETWORK_RESTORERS)


def restorer_weights(name: str) -> list[str]:
    """The weights entries a restorer needs (checked before any image is touched)."""
    if name not in RESTORERS:
        raise UsageError(f"unknown restorer {name!r}; choose one of: {', '.join(RESTORERS)}")
    return [] if name == "none" else [name]


def build_restorer(cfg: RestoreConfig, store: "WeightsStore | None", device: str = "cpu") -> Restorer:
    restorer_weights(cfg.restorer)
    if cfg.restorer == "none":
        return Passthrough(cfg.size)
    from facerest_cli.restore.networks import build_network_restorer

    assert store is not None
    return build_network_restorer(cfg, store, device)

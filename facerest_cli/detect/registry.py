"""Detector names (``--detector``) -> weights entries and builders."""

from __future__ import annotations

from typing import TYPE_CHECKING

from facerest_cli.config import DetectConfig
from facerest_cli.detect.base import Detector
from facerest_cli.errors import UsageError

if TYPE_CHECKING:
    from facerest_cli.weights.cache import WeightsStore

# CLI name -> weights.toml entries that can serve it, in order of preference: the first one installed is used,
# else the first is fetched. "scrfd" is the small model; scrfd-10g the accurate one. retinaface-mnet has two
# trained releases with the same keys but different activations and anchors (see weights.toml).
DETECTORS: dict[str, tuple[str, ...]] = {
    "yunet": ("yunet",),
    "retinaface-mnet": ("retinaface-mnet", "retinaface-mnet-1mb"),
    "retinaface-mnet-1mb": ("retinaface-mnet-1mb",),
    "retinaface-r50": ("retinaface-r50",),
    "scrfd": ("scrfd-500m",),
    "scrfd-500m": ("scrfd-500m",),
    "scrfd-10g": ("scrfd-10g",),
}


def detector_entry(name: str, store: "WeightsStore | None" = None) -> str:
    """The weights entry for ``--detector name``: the first candidate installed locally, else the preferred one."""
    try:
        candidates = DETECTORS[name]
    except KeyError:
        raise UsageError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}") from None
    if store is not None:
        for c in candidates:
            if store.locate(c) is not None:
                return c
    return candidates[0]


def build_detector(cfg: DetectConfig, store: "WeightsStore", device: str = "cpu") -> Detector:
    entry_name = detector_entry(cfg.detector, store)
    entry = store.registry.get(entry_name)
    path = store.ensure(entry_name)
    if entry.arch == "yunet":
        from facerest_cli.detect.yunet import YuNetDetector

        return YuNetDetector(path, score_threshold=cfg.score_threshold)
    if entry.arch == "scrfd":
        from facerest_cli.detect.scrfd import ScrfdDetector

        det = ScrfdDetector(path, score_threshold=cfg.score_threshold, nms_threshold=cfg.nms_threshold)
        det.name = cfg.detector
        return det
    from facerest_cli.detect.retinaface import RetinaFaceDetector
    from facerest_cli.weights.loader import load_model

    return RetinaFaceDetector(
        load_model(entry, path), entry_name, device=device, score_threshold=cfg.score_threshold, nms_threshold=cfg.nms_threshold
    )

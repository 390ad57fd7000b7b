"""Detector names (``--detector``) -> weights entries and builders."""

from __future__ import annotations

from typing import TYPE_CHECKING

from facerest_cli.config import DetectConfig
from facerest_cli.detect.base import Detector
from facerest_cli.errors import UsageError

if TYPE_CHECKING:
    from facerest_cli.weights.cache import WeightsStore

# CLI name -> weights.toml entry. "scrfd" is the small model we can always test; scrfd-10g is the accurate one.
DETECTORS: dict[str, str] = {
    "yunet": "yunet",
    "retinaface-mnet": "retinaface-mnet",
    "retinaface-r50": "retinaface-r50",
    "scrfd": "scrfd-500m",
    "scrfd-500m": "scrfd-500m",
    "scrfd-10g": "scrfd-10g",
}


def detector_entry(name: str) -> str:
    try:
        return DETECTORS[name]
    except KeyError:
        raise UsageError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}") from None


def build_detector(cfg: DetectConfig, store: "WeightsStore", device: str = "cpu") -> Detector:
    entry_name = detector_entry(cfg.detector)
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
        load_model(entry, path), cfg.detector, device=device, score_threshold=cfg.score_threshold, nms_threshold=cfg.nms_threshold
    )

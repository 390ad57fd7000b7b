"""Detector names (``--detector``) -> weights entries and builders.

``build_detector`` returns a ``FaceDetector``: the scale-aware, checked detector (``face_detector.py``) around one
raw network, or around every installed one for ``auto``. ``build_raw_detector`` builds one network alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from facerest_cli.config import DetectConfig
from facerest_cli.errors import UsageError

if TYPE_CHECKING:
    from facerest_cli.detect.base import RawDetector
    from facerest_cli.detect.face_detector import FaceDetector
    from facerest_cli.weights.cache import WeightsStore
    from facerest_cli.registry import Execution

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
AUTO = "auto"
# What ``auto`` fuses: every one of these entries that is installed (verified locally), at most one per family,
# the better model of a family first. Nothing installed: yunet is fetched, as a single detector would be.
# retinaface-mnet-1mb is left out: on the labelled set it adds no face the others miss, brings most of the false
# boxes and costs the most CPU time (/work/notes/detect_results.md); facexlib's RetinaFace releases are fused.
AUTO_FAMILIES: tuple[tuple[str, ...], ...] = (
    ("yunet",),
    ("scrfd-10g", "scrfd-500m"),
    ("retinaface-r50", "retinaface-mnet"),
)
DETECTOR_CHOICES = (AUTO, *DETECTORS)


def detector_entries(name: str, store: "WeightsStore | None" = None) -> list[str]:
    """The weights entries ``--detector name`` runs: one for a plain name, the installed ones for ``auto``."""
    if name == AUTO:
        found = []
        if store is not None:
            for family in AUTO_FAMILIES:
                for entry in family:
                    if store.locate(entry) is not None:
                        found.append(entry)
                        break
        return found or ["yunet"]
    return [detector_entry(name, store)]


def detector_entry(name: str, store: "WeightsStore | None" = None) -> str:
    """The weights entry for ``--detector name``: the first candidate installed locally, else the preferred one.
    For ``auto``, the first entry it fuses (every entry: ``detector_entries``)."""
    if name == AUTO:
        return detector_entries(name, store)[0]
    try:
        candidates = DETECTORS[name]
    except KeyError:
        raise UsageError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTOR_CHOICES)}") from None
    if store is not None:
        for c in candidates:
            if store.locate(c) is not None:
                return c
    return candidates[0]


def build_raw_detector(entry_name: str, store: "WeightsStore", device: str = "cpu", *, score_floor: float = 0.3,
                       nms_threshold: float = 0.4, execution: "Execution | None" = None) -> "RawDetector":
    """One network, run once per call on the image it is given (see ``detect.base.RawDetector``).

    ``score_floor`` is the lowest raw score kept as a candidate; the face detector applies the real threshold
    after merging passes."""
    entry = store.registry.get(entry_name)
    path = store.ensure(entry_name)
    if entry.arch == "yunet":
        from facerest_cli.detect.yunet import YuNetDetector

        return YuNetDetector(path, score_threshold=score_floor)
    if entry.arch == "scrfd":
        from facerest_cli.detect.scrfd import ScrfdDetector

        det = ScrfdDetector(path, score_threshold=score_floor, nms_threshold=nms_threshold)
        det.name = entry_name
        return det
    from facerest_cli.detect.retinaface import RetinaFaceDetector
    from facerest_cli.registry import build

    # The torch RetinaFace runs through the backend like every other network (OpenVINO/bf16 on CPU by default).
    model = build(entry_name, store, device, execution=execution, role="detector")
    return RetinaFaceDetector(model, entry_name, device=device, score_threshold=score_floor,
                              nms_threshold=nms_threshold)


def build_detector(cfg: DetectConfig, store: "WeightsStore", device: str = "cpu", *,
                   execution: "Execution | None" = None) -> "FaceDetector":
    """The face detector ``cfg`` describes: scale-aware, checked, fused over every installed network for auto."""
    from facerest_cli.detect.face_detector import FaceDetector

    entries = detector_entries(cfg.detector, store)
    raws = [build_raw_detector(e, store, device, nms_threshold=cfg.nms_threshold, execution=execution) for e in entries]
    return FaceDetector(raws, cfg, name=cfg.detector)

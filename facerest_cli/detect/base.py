"""The detector contract, and what every detector shares: bounded resolution, NMS, face selection."""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol, Sequence

import numpy as np

from facerest_cli.config import DetectConfig
from facerest_cli.types import Detection


class Detector(Protocol):
    """``detect(bgr)`` with ``bgr`` an ``(H, W, 3)`` uint8 BGR image -> detections in its pixel coordinates.

    Implementations run at the size they are given; ``detect_bounded`` handles large images.
    """

    name: str

    def detect(self, bgr: np.ndarray) -> list[Detection]: ...


def to_detection_bgr(pixels: np.ndarray) -> np.ndarray:
    """Any decoded image -> the uint8 BGR detectors expect (gray replicated, alpha dropped, 16 -> 8 bit)."""
    a = pixels
    if a.dtype == np.uint16:
        from facerest_cli.io.sinks import to_8bit  # in bands: no full-size 32-bit copy of a big 16-bit scan

        a = to_8bit(a)
    c = a.shape[2]
    if c in (1, 2):
        a = np.repeat(a[:, :, :1], 3, axis=2)
    elif c == 4:
        a = a[:, :, :3]
    return np.ascontiguousarray(a)


def detect_bounded(detector: Detector, bgr: np.ndarray, max_side: int) -> list[Detection]:
    """Detect at most at ``max_side`` pixels on the longer side; boxes and landmarks are mapped back."""
    import cv2

    h, w = bgr.shape[:2]
    scale = min(1.0, max_side / max(h, w)) if max_side > 0 else 1.0
    if scale >= 1.0:
        return detector.detect(bgr)
    small = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    sx, sy = w / small.shape[1], h / small.shape[0]
    out = []
    for d in detector.detect(small):
        box = d.box * np.array([sx, sy, sx, sy], np.float32)
        # Pixel centres: a small-image coordinate u maps to (u + 0.5) * s - 0.5 in the full image.
        lm = (d.landmarks + 0.5) * np.array([sx, sy], np.float32) - 0.5
        out.append(replace(d, box=box.astype(np.float32), landmarks=lm.astype(np.float32)))
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, highest score first."""
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(0, x2 - x1) * np.maximum(0, y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        ih = np.maximum(0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = iw * ih
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)


def select_faces(dets: Sequence[Detection], image_hw: tuple[int, int], cfg: DetectConfig) -> list[Detection]:
    """Apply ``--min-face`` and ``--faces all|largest|center``; faces are ordered left to right."""
    faces = [d for d in dets if d.size >= cfg.min_face]
    if not faces:
        return []
    if cfg.faces == "largest":
        faces = [max(faces, key=lambda d: d.size)]
    elif cfg.faces == "center":
        cy, cx = image_hw[0] / 2.0, image_hw[1] / 2.0

        def dist(d: Detection) -> float:
            bx, by = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
            return float((bx - cx) ** 2 + (by - cy) ** 2)

        faces = [min(faces, key=dist)]
    # A geometric order (not score order) keeps face indices comparable between detectors.
    return sorted(faces, key=lambda d: (float(d.box[0]), float(d.box[1])))

"""The detector contracts, and what every detector shares: candidate arrays, scale mapping, NMS, face selection.

Two levels of detector:

* a *raw* detector (``YuNetDetector``, ``ScrfdDetector``, ``RetinaFaceDetector``) runs one network once, on the
  image it is given, and returns ``Candidates`` in that image's pixels. ``spec`` says which face sizes (at its
  input) it finds reliably, so the scale-aware detector knows where to run it.
* a *face* detector (``facerest_cli.detect.face_detector.FaceDetector``, what ``build_detector`` returns) finds
  every face of an image at any size: it runs its raw detectors over an image pyramid, merges and checks the
  candidates, and returns ``Detection`` s. That is the ``Detector`` protocol the rest of the package uses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Protocol, Sequence

import numpy as np

from facerest_cli.config import DetectConfig
from facerest_cli.types import Detection


class Detector(Protocol):
    """``detect(bgr)`` with ``bgr`` an ``(H, W, 3)`` uint8 BGR image -> detections in its pixel coordinates."""

    name: str

    def detect(self, bgr: np.ndarray) -> list[Detection]: ...


@dataclass(frozen=True)
class RawSpec:
    """Where a raw network works: face sizes at its input (longer box side, pixels) it finds reliably, and its
    input geometry. ``fixed_input`` is ``(w, h)`` for exports with a fixed input (smaller images are padded);
    ``tile`` is the tile side for full-resolution passes over large images."""

    face_min: float
    face_max: float
    fixed_input: tuple[int, int] | None = None
    tile: int = 2048


@dataclass(frozen=True)
class Candidates:
    """Face candidates of one pass: ``boxes`` ``(N, 4)`` float32 x1, y1, x2, y2; ``scores`` ``(N,)`` float32 (the
    network's own score, not calibrated); ``landmarks`` ``(N, 5, 2)`` float32 (``LANDMARK_NAMES`` order), all in
    the pixel coordinates of the image the pass saw (origin at the centre of the top-left pixel).
    ``non_finite`` counts the candidates dropped because a coordinate or score was NaN or infinite."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray
    non_finite: int = 0

    @staticmethod
    def empty(non_finite: int = 0) -> "Candidates":
        return Candidates(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32), non_finite)

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, idx: np.ndarray) -> "Candidates":
        return Candidates(self.boxes[idx], self.scores[idx], self.landmarks[idx], self.non_finite)

    @staticmethod
    def concat(parts: Sequence["Candidates"]) -> "Candidates":
        if not parts:
            return Candidates.empty()
        return Candidates(
            np.concatenate([p.boxes for p in parts]).astype(np.float32),
            np.concatenate([p.scores for p in parts]).astype(np.float32),
            np.concatenate([p.landmarks for p in parts]).astype(np.float32),
            sum(p.non_finite for p in parts),
        )


class RawDetector(Protocol):
    """One network, one pass: ``candidates(bgr)`` on a ``(H, W, 3)`` uint8 BGR image at the size given (at most
    ``spec.fixed_input``); ``detect(bgr)`` is the same as ``Detection`` s, fitting larger images into a fixed input."""

    name: str
    spec: RawSpec

    def candidates(self, bgr: np.ndarray) -> Candidates: ...

    def detect(self, bgr: np.ndarray) -> list[Detection]: ...


def drop_non_finite(c: Candidates) -> Candidates:
    """Remove candidates with a NaN/inf box, score or landmark, and count them in ``non_finite``.

    Done before any NMS: one NaN box would otherwise make every IoU with it NaN."""
    if len(c) == 0:
        return c
    b = c.boxes.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        # the box's width and height too: two huge finite corners (untrained weights) make an infinite size
        size_ok = np.isfinite(b[:, 2] - b[:, 0]) & np.isfinite(b[:, 3] - b[:, 1]) & (np.abs(b) < 1e12).all(1)
    ok = size_ok & np.isfinite(c.scores) & np.isfinite(c.landmarks.reshape(len(c.scores), 10)).all(1)
    if ok.all():
        return c
    idx = np.nonzero(ok)[0]
    return Candidates(c.boxes[idx], c.scores[idx], c.landmarks[idx], c.non_finite + int((~ok).sum()))


def map_to_image(c: Candidates, sx: float, sy: float, ox: float = 0.0, oy: float = 0.0) -> Candidates:
    """Candidates of a resized (and offset) pass -> image coordinates, pixel-centre convention.

    A point ``u`` of a pass whose image was the full image scaled by ``1/sx`` (so ``sx`` = full pixels per pass
    pixel) and cropped at ``(ox, oy)`` (pass pixels) is at ``(u + ox + 0.5) * sx - 0.5`` in the full image."""
    if len(c) == 0:
        return c
    s = np.array([sx, sy], np.float64)
    o = np.array([ox, oy], np.float64)
    lm = (c.landmarks.astype(np.float64) + o + 0.5) * s - 0.5
    b = (c.boxes.reshape(-1, 2, 2).astype(np.float64) + o + 0.5) * s - 0.5
    return Candidates(b.reshape(-1, 4).astype(np.float32), c.scores, lm.astype(np.float32), c.non_finite)


def run_resized(fn: Callable[[np.ndarray], Candidates], bgr: np.ndarray, scale: float) -> Candidates:
    """``fn`` on ``bgr`` resized by ``scale`` (area averaging when shrinking), mapped back to ``bgr``'s pixels."""
    import cv2

    h, w = bgr.shape[:2]
    if abs(scale - 1.0) < 1e-9:
        return fn(bgr)
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(bgr, (sw, sh), interpolation=interp)
    return map_to_image(fn(small), w / sw, h / sh)


def candidates_to_detections(c: Candidates) -> list[Detection]:
    return [
        Detection(box=c.boxes[i].astype(np.float32), score=float(c.scores[i]), landmarks=c.landmarks[i].astype(np.float32))
        for i in range(len(c))
    ]


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
    """``detector.detect`` at most at ``max_side`` pixels on the longer side (0: as given); boxes and landmarks
    are mapped back. A ``FaceDetector`` already works at every scale: give it ``max_side=0``, or bound it with
    ``DetectConfig.max_side`` instead."""
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


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of ``box`` ``(4,)`` with each of ``boxes`` ``(N, 4)``; 0 where a union is empty."""
    iw = np.maximum(0, np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]))
    ih = np.maximum(0, np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]))
    inter = iw * ih
    a = max(0.0, float(box[2] - box[0])) * max(0.0, float(box[3] - box[1]))
    areas = np.maximum(0, boxes[:, 2] - boxes[:, 0]) * np.maximum(0, boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(a + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, highest score first.

    Rows with a non-finite box or score are never kept (callers drop and count them first, see
    ``drop_non_finite``); a box is suppressed only when its IoU with a kept box is *above* the threshold, so a
    NaN can never suppress anything."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    finite = np.nonzero(np.isfinite(boxes).all(1) & np.isfinite(scores))[0]
    order = finite[np.argsort(-scores[finite], kind="stable")]
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iou = iou_one_to_many(boxes[i], boxes[rest])
        order = rest[~(iou > iou_threshold)]
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

"""The face detector: every face of an image found once, at any size, by one network or several fused.

For each raw network (``detect.base.RawDetector``) the image is searched over a pyramid of passes
(``scales.plan_passes``: a coarse pass for large faces, finer tiled ones for small faces); candidates are mapped
back to the image (pixel-centre convention), non-finite ones dropped and counted, and each pass keeps only the
face sizes it is responsible for. Then, over all passes and networks:

1. scores are calibrated (``calibration.calibrate``: each network's score -> the probability that a candidate
   is a face, fitted on the labelled set), so networks with different score scales can be compared and fused;
2. candidates of the same face are fused (weighted box fusion: boxes and landmarks averaged with the calibrated
   scores as weights; the face's score combines the networks that found it, see ``calibration.fuse_scores``);
3. faces under the threshold are dropped, and the rest checked: a 5-point layout that is not a face's
   (``plausible.layout_reason``) and a box mostly inside a larger, well-scoring, plausible face (a part: an eye,
   a chin) are rejected, then overlapping survivors are suppressed (NMS).

Every drop is counted with its reason in ``DetectStats`` (per call in ``DetectResult.stats``, summed over the
detector's life in ``FaceDetector.stats()``), never silent.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from facerest_cli.config import DetectConfig
from facerest_cli.detect.base import Candidates, RawDetector, drop_non_finite, iou_one_to_many, map_to_image
from facerest_cli.detect.calibration import calibrate, default_threshold, fuse_scores, landmark_weight
from facerest_cli.detect.plausible import LayoutLimits, layout_reason
from facerest_cli.detect.scales import detail_scale, plan_passes
from facerest_cli.detect.stats import DetectStats
from facerest_cli.types import Detection

MATCH_IOU = 0.5  # candidates overlapping at least this much are the same face (fused)
PART_INSIDE = 0.65  # a box with this fraction of its area inside a larger face ...
PART_SIZE = 0.8  # ... and at most this fraction of its size is a part of that face
EDGE_PX = 1.0  # a box this close to an inner tile edge is cut by the tile: the overlapping tile has it whole


@dataclass
class DetectResult:
    """``detections``: faces in image pixels, left to right; ``stats``: what this call did."""

    detections: list[Detection]
    stats: DetectStats = field(default_factory=DetectStats)


@dataclass
class _Pool:
    """All candidates of one image, in image pixels: one row per candidate."""

    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)
    source: list[np.ndarray] = field(default_factory=list)  # index of the raw network
    quality: list[np.ndarray] = field(default_factory=list)  # how well the pass's scale suits the face (0, 1]

    def add(self, c: Candidates, source: int, quality: np.ndarray) -> None:
        if len(c):
            self.boxes.append(c.boxes)
            self.scores.append(c.scores)
            self.landmarks.append(c.landmarks)
            self.source.append(np.full(len(c), source, np.int64))
            self.quality.append(quality.astype(np.float64))

    def arrays(self):
        if not self.boxes:
            return (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32),
                    np.zeros(0, np.int64), np.zeros(0, np.float64))
        return (np.concatenate(self.boxes), np.concatenate(self.scores), np.concatenate(self.landmarks),
                np.concatenate(self.source), np.concatenate(self.quality))


def pass_quality(face_px: np.ndarray, spec) -> np.ndarray:
    """How well a pass suits a face of ``face_px`` pixels at its input: 1 from twice the smallest reliable size to
    three quarters of the largest, falling linearly towards both ends (never below 0.05). Fused boxes and
    landmarks weight each candidate by it, so a face seen mid-range outweighs the same face seen at the edge of
    a network's range (where its landmarks are least accurate)."""
    f = np.maximum(np.asarray(face_px, np.float64), 1e-6)
    q = np.minimum(1.0, f / (2.0 * spec.face_min)) * np.minimum(1.0, 0.75 * spec.face_max / f)
    return np.maximum(q, 0.05)


class FaceDetector:
    """Scale-aware detection with one raw network (``--detector NAME``) or several fused (``--detector auto``).

    ``detect(bgr)`` -> ``list[Detection]`` (the ``Detector`` protocol); ``run(bgr)`` -> ``DetectResult`` with this
    call's ``DetectStats``; ``stats()`` -> the sum over every call so far (thread-safe snapshot).
    ``bgr``: ``(H, W, 3)`` uint8 BGR (``detect.base.to_detection_bgr``). Detection scores are the network's own
    score for a single network and the fused calibrated probability for several.
    """

    def __init__(self, raws: Sequence[RawDetector], cfg: DetectConfig, name: str | None = None):
        if not raws:
            raise ValueError("FaceDetector needs at least one raw detector")
        self.raws = list(raws)
        self.cfg = cfg
        self.entries = [r.name for r in self.raws]
        self.name = name or (self.entries[0] if len(self.raws) == 1 else "auto")
        self.fused = len(self.raws) > 1
        self.threshold = cfg.score_threshold if cfg.score_threshold is not None else default_threshold(self.entries)
        self.limits = LayoutLimits(min_eye_distance=cfg.min_eye_distance)
        self._lock = threading.Lock()
        self._total = DetectStats()

    @property
    def description(self) -> str:
        """What report.jsonl records: ``auto(yunet+scrfd-500m)`` (the weights entries fused), else the
        ``--detector`` name."""
        return f"{self.name}({'+'.join(self.entries)})" if self.fused else self.name

    def detect(self, bgr: np.ndarray) -> list[Detection]:
        return self.run(bgr).detections

    def stats(self) -> DetectStats:
        with self._lock:
            return self._total.copy()

    def take_stats(self) -> DetectStats:
        """The counts since the last call, and a fresh start (an engine that splits a run across workers sums
        these per task on its driver)."""
        with self._lock:
            out, self._total = self._total, DetectStats()
            return out

    # ------------------------------------------------------------------------------------------------ passes

    def candidates(self, bgr: np.ndarray, st: DetectStats) -> tuple[np.ndarray, ...]:
        """Every network over its pyramid, in image pixels: ``boxes`` ``(N, 4)``, raw ``scores`` ``(N,)``,
        ``landmarks`` ``(N, 5, 2)``, ``source`` ``(N,)`` (index into ``raws``) and ``quality`` ``(N,)``
        (``pass_quality`` of the pass that found each). Non-finite candidates are counted in ``st``."""
        import cv2

        h, w = bgr.shape[:2]
        detail = detail_scale(bgr)
        plans = [plan_passes(h, w, raw.spec, max_side=self.cfg.max_side, detail_scale=detail) for raw in self.raws]
        # The pyramid images, largest first, each shrunk from the smallest larger one already made (a 24-megapixel
        # photo is read once); networks with equal pass sizes share them.
        resized: dict[tuple[int, int], np.ndarray] = {(w, h): bgr}
        for size in sorted({p.size for plan in plans for p in plan}, key=lambda s: -s[0] * s[1]):
            if size not in resized:
                src = min((k for k in resized if k[0] >= size[0] and k[1] >= size[1]), key=lambda k: k[0] * k[1])
                resized[size] = cv2.resize(resized[src], size, interpolation=cv2.INTER_AREA)
        pool = _Pool()
        for i, (raw, plan) in enumerate(zip(self.raws, plans)):
            for p in plan:
                sw, sh = p.size
                img = resized[p.size]
                sx, sy = w / sw, h / sh
                lo, hi = p.accept
                for x0, y0, x1, y1 in p.tiles:
                    c = raw.candidates(np.ascontiguousarray(img[y0:y1, x0:x1]))
                    st.passes += 1
                    st.reject("non_finite", c.non_finite)
                    if not len(c):
                        continue
                    st.candidates += len(c)
                    keep = np.ones(len(c), bool)
                    # cut by an inner tile edge (the neighbouring tile, overlapping by more than a face, has it whole)
                    b = c.boxes
                    if x0 > 0:
                        keep &= b[:, 0] > EDGE_PX
                    if y0 > 0:
                        keep &= b[:, 1] > EDGE_PX
                    if x1 < sw:
                        keep &= b[:, 2] < (x1 - x0) - 1 - EDGE_PX
                    if y1 < sh:
                        keep &= b[:, 3] < (y1 - y0) - 1 - EDGE_PX
                    # a finite but absurd coordinate (untrained weights) can overflow once mapped: check again
                    k = c.take(np.nonzero(keep)[0])
                    m = drop_non_finite(map_to_image(Candidates(k.boxes, k.scores, k.landmarks), sx, sy, x0, y0))
                    st.reject("non_finite", m.non_finite)
                    size = np.maximum(m.boxes[:, 2] - m.boxes[:, 0], m.boxes[:, 3] - m.boxes[:, 1])
                    sel = np.nonzero((size >= lo) & (size <= hi))[0]
                    pool.add(m.take(sel), i, pass_quality(size[sel] * p.scale, raw.spec))
        return pool.arrays()

    # ------------------------------------------------------------------------------------------------- merge

    def run(self, bgr: np.ndarray) -> DetectResult:
        t0 = time.perf_counter()
        st = DetectStats(images=1)
        dets = self.merge(*self.candidates(bgr, st), st)
        st.faces = len(dets)
        st.seconds = time.perf_counter() - t0
        with self._lock:
            self._total.add(st)
        return DetectResult(dets, st)

    def merge(self, boxes: np.ndarray, raw_scores: np.ndarray, lms: np.ndarray, src: np.ndarray,
              quality: np.ndarray | None, st: DetectStats) -> list[Detection]:
        """Pooled candidates (``candidates``) -> the faces, left to right; every drop counted in ``st``."""
        names = self.entries
        quality = np.ones(len(raw_scores)) if quality is None else np.asarray(quality, np.float64)
        probs = np.array([calibrate(names[s], v) for s, v in zip(src, raw_scores)], np.float64) if self.fused else raw_scores.astype(np.float64)

        # 1. fuse candidates of the same face (weighted box fusion), best first
        order = np.argsort(-probs, kind="stable")
        clusters: list[list[int]] = []
        fused_boxes: list[np.ndarray] = []
        for i in order:
            if fused_boxes:
                iou = iou_one_to_many(boxes[i], np.array(fused_boxes))
                j = int(np.argmax(iou))
                if iou[j] >= MATCH_IOU:
                    clusters[j].append(i)
                    idx = clusters[j]
                    wts = probs[idx] * quality[idx]
                    fused_boxes[j] = (boxes[idx] * wts[:, None]).sum(0) / max(wts.sum(), 1e-12)
                    continue
            clusters.append([i])
            fused_boxes.append(boxes[i].astype(np.float64))
        st.merged += sum(len(c) - 1 for c in clusters)
        faces = []
        # Landmarks are averaged by inverse variance too: each network's measured landmark error (calibration.py).
        lm_w = np.array([landmark_weight(n) for n in names], np.float64)
        for idx, fb in zip(clusters, fused_boxes):
            wts = probs[idx] * quality[idx] * lm_w[src[idx]]
            lm = (lms[idx] * wts[:, None, None]).sum(0) / max(wts.sum(), 1e-12)
            if self.fused:
                per_net = {}
                for k in idx:
                    per_net[src[k]] = max(per_net.get(src[k], 0.0), float(probs[k]))
                score = fuse_scores(list(per_net.values()), len(self.raws))
            else:
                score = float(probs[idx].max())
            faces.append(Detection(box=fb.astype(np.float32), score=score, landmarks=lm.astype(np.float32)))

        # 2. threshold, layout check
        kept = []
        for d in faces:
            if d.score < self.threshold:
                st.reject("low_score")
                continue
            reason = layout_reason(d.box, d.landmarks, self.limits)
            if reason is not None:
                if not self.cfg.keep_all:
                    st.reject(reason)
                    continue
                st.kept_implausible += 1
            kept.append(d)

        # 3. parts of larger faces, then duplicates
        if not self.cfg.keep_all:
            kept = self._drop_parts(kept, st)
        kept = self._nms(kept, st)
        return sorted(kept, key=lambda d: (float(d.box[0]), float(d.box[1])))

    @staticmethod
    def _drop_parts(faces: list[Detection], st: DetectStats) -> list[Detection]:
        """Drop a face whose box lies mostly inside a clearly larger face's box (all faces here passed the
        threshold and the layout check, so the larger one is a well-scoring, plausible face)."""
        by_size = sorted(faces, key=lambda d: -d.size)
        kept: list[Detection] = []
        for d in by_size:
            b = d.box
            area = max(1e-6, float((b[2] - b[0]) * (b[3] - b[1])))
            part = False
            for a in kept:
                if d.size > PART_SIZE * a.size:
                    continue
                iw = max(0.0, min(b[2], a.box[2]) - max(b[0], a.box[0]))
                ih = max(0.0, min(b[3], a.box[3]) - max(b[1], a.box[1]))
                if iw * ih / area >= PART_INSIDE:
                    part = True
                    break
            if part:
                st.reject("part_of_larger_face")
            else:
                kept.append(d)
        return kept

    def _nms(self, faces: list[Detection], st: DetectStats) -> list[Detection]:
        kept: list[Detection] = []
        for d in sorted(faces, key=lambda d: -d.score):
            if kept and float(iou_one_to_many(d.box, np.array([k.box for k in kept])).max()) > self.cfg.nms_threshold:
                st.reject("duplicate")
            else:
                kept.append(d)
        return kept

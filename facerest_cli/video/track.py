"""Face tracks across frames: greedy IoU matching of each frame's boxes to the tracks' predicted boxes.

A track keeps its id while its face is matched in consecutive frames; it survives a few missed detections (so a
one-frame detector dropout neither resets the landmark smoothing nor changes the id) and ends after
``max_missed`` frames without a match. A scene cut makes the boxes jump, so the new faces start new tracks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facerest_cli.video.smooth import LandmarkSmoother


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4) -> (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


@dataclass
class Track:
    id: int
    box: np.ndarray  # last matched box (raw detection)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # box change per frame, smoothed
    missed: int = 0
    hits: int = 0
    smoother: LandmarkSmoother | None = None
    gray: bool | None = None  # decided on the track's first face, then kept (no colour flicker)

    def predicted(self) -> np.ndarray:
        return self.box + self.velocity * (1 + self.missed)


class IoUTracker:
    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 5, smooth: bool = True, first_id: int = 1):
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.smooth = smooth
        self.tracks: list[Track] = []
        self._next_id = first_id
        self.ended: list[int] = []  # ids of tracks ended since the last update (consumers may free state)

    def reset(self) -> None:
        """A scene cut: every track ends now."""
        self.ended = [t.id for t in self.tracks]
        self.tracks = []

    def update(self, boxes: np.ndarray) -> list[Track]:
        """Match this frame's boxes ``(N, 4)``; returns the track of each box, in order (new tracks for new faces)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        self.ended = []
        assigned: list[Track | None] = [None] * len(boxes)
        if self.tracks and len(boxes):
            pred = np.stack([t.predicted() for t in self.tracks])
            iou = iou_matrix(boxes, pred)
            pairs = sorted(((iou[i, j], i, j) for i in range(len(boxes)) for j in range(len(self.tracks))
                            if iou[i, j] >= self.iou_threshold), reverse=True)
            used_t: set[int] = set()
            for _, i, j in pairs:
                if assigned[i] is None and j not in used_t:
                    assigned[i] = self.tracks[j]
                    used_t.add(j)
        matched = {id(t) for t in assigned if t is not None}
        for t in self.tracks:
            if id(t) not in matched:
                t.missed += 1
        for i, b in enumerate(boxes):
            t = assigned[i]
            if t is None:
                t = Track(id=self._next_id, box=b.copy(), smoother=LandmarkSmoother(self.smooth))
                self._next_id += 1
                self.tracks.append(t)
                assigned[i] = t
            else:
                step = (b - t.box) / (1 + t.missed)
                t.velocity = step if t.hits <= 1 else 0.5 * t.velocity + 0.5 * step
                t.box = b.copy()
                t.missed = 0
            t.hits += 1
        alive = []
        for t in self.tracks:
            if t.missed > self.max_missed:
                self.ended.append(t.id)
            else:
                alive.append(t)
        self.tracks = alive
        return [t for t in assigned if t is not None]


class SceneCuts:
    """Hard cuts, from a 64x36 grey thumbnail of each frame: a mean absolute change above ``threshold`` grey
    levels between consecutive frames. At a cut every track ends (new ids, smoothing restarts), so a face is never
    smoothed into the different face that takes its place in the next shot."""

    def __init__(self, threshold: float = 30.0):
        self.threshold = threshold
        self.count = 0
        self._prev: np.ndarray | None = None

    def __call__(self, bgr: np.ndarray) -> bool:
        import cv2

        small = cv2.resize(bgr[:, :, :3] if bgr.shape[2] >= 3 else bgr, (64, 36), interpolation=cv2.INTER_AREA)
        grey = (small.astype(np.float32) @ np.array([0.114, 0.587, 0.299], np.float32)) if small.ndim == 3 else small.astype(np.float32)
        prev, self._prev = self._prev, grey
        cut = prev is not None and float(np.abs(grey - prev).mean()) > self.threshold
        self.count += cut
        return cut

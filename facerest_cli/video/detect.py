"""Track-guided detection: the whole frame is searched for faces every ``redetect_s`` seconds; in between, each
tracked face is re-detected only in a window around where its track predicts it.

The detector's landmarks are still measured on every frame (the alignment needs them), but on a window of about
2.5 face sizes instead of the whole frame: at 720p with one face that is about a tenth of the pixels. Windows are
detected at the same scale as the whole frame (``--det-size``), so both passes measure faces alike. When a tracked
face is not found in its window (it left, or the scene cut), the whole frame is searched again at once, and
frames with no tracked face are always searched whole: only a new face joining faces already tracked waits, at
most ``redetect_s``, to be found.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from facerest_cli.config import DetectConfig
from facerest_cli.detect.base import to_detection_bgr
from facerest_cli.types import Detection
from facerest_cli.video.track import IoUTracker, iou_matrix

WINDOW_MARGIN = 0.5  # face sizes added on each side of the predicted box
MIN_WINDOW = 64  # pixels (at detection scale)


class TrackedDetector:
    def __init__(self, prep, cfg: DetectConfig, redetect_s: float):
        self.prep = prep
        self.cfg = cfg
        self.redetect_s = redetect_s
        self._last_full: float | None = None
        self.full_passes = 0
        self.window_passes = 0

    def __call__(self, pixels: np.ndarray, t: float, tracker: IoUTracker) -> list[Detection]:
        due = self._last_full is None or self.redetect_s <= 0 or t - self._last_full >= self.redetect_s - 1e-6
        live = [tr for tr in tracker.tracks if tr.missed == 0]  # faces found in the previous frame
        if due or not live:
            return self._full(pixels, t)  # also every frame while nothing is tracked: a face is never found late
        found = self._windows(pixels, live, tracker.iou_threshold)
        return self._full(pixels, t) if found is None else found

    def _full(self, pixels: np.ndarray, t: float) -> list[Detection]:
        self._last_full = t
        self.full_passes += 1
        return self.prep.detect(pixels)

    def _windows(self, pixels: np.ndarray, tracks: list, iou_threshold: float) -> list[Detection] | None:
        """One detection per track, in its window; None as soon as a track's face is not found."""
        import cv2

        bgr = to_detection_bgr(pixels)
        h, w = bgr.shape[:2]
        ms = self.cfg.max_side
        scale = min(1.0, ms / max(h, w)) if ms > 0 else 1.0
        out: list[Detection] = []
        for tr in tracks:
            box = tr.predicted()
            size = max(box[2] - box[0], box[3] - box[1], 1.0)
            m = WINDOW_MARGIN * size + MIN_WINDOW / (2 * scale)
            x0, y0 = max(0, int(np.floor(box[0] - m))), max(0, int(np.floor(box[1] - m)))
            x1, y1 = min(w, int(np.ceil(box[2] + m))), min(h, int(np.ceil(box[3] + m)))
            if x1 - x0 < 8 or y1 - y0 < 8:
                return None
            roi = np.ascontiguousarray(bgr[y0:y1, x0:x1])
            if scale < 1.0:
                small = cv2.resize(roi, (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))),
                                   interpolation=cv2.INTER_AREA)
                sx, sy = (x1 - x0) / small.shape[1], (y1 - y0) / small.shape[0]
            else:
                small, sx, sy = roi, 1.0, 1.0
            self.window_passes += 1
            dets = self.prep.detector.detect(small)
            if not dets:
                return None
            mapped = []
            for d in dets:
                b = d.box * np.array([sx, sy, sx, sy], np.float32) + np.array([x0, y0, x0, y0], np.float32)
                lm = (d.landmarks + 0.5) * np.array([sx, sy], np.float32) - 0.5 + np.array([x0, y0], np.float32)
                mapped.append(replace(d, box=b.astype(np.float32), landmarks=lm.astype(np.float32)))
            iou = iou_matrix(np.array([d.box for d in mapped]), box[None])[:, 0]
            j = int(np.argmax(iou))
            if iou[j] < iou_threshold or mapped[j].size < self.cfg.min_face:
                return None
            out.append(mapped[j])
        # Windows of faces close together can find the same face twice: keep one per place.
        keep: list[Detection] = []
        for d in sorted(out, key=lambda d: -d.score):
            if not keep or iou_matrix(d.box[None], np.array([k.box for k in keep])).max() < 0.5:
                keep.append(d)
        return sorted(keep, key=lambda d: (float(d.box[0]), float(d.box[1])))

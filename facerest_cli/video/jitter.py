"""The jitter metric: how much the aligned crop shakes against the face, frame to frame.

For each frame of a track, the *aligned landmarks* are where the crop puts the template's five points in the
frame (the inverse of the alignment matrix applied to the template): they move exactly as the crop moves. The
face's own (global) motion is removed by subtracting the track's centred moving average over ``2k+1`` frames;
what is left is jitter. The metric is the mean frame-to-frame displacement of those residuals, over the five
points and all frame pairs, in crop pixels (image pixels times the crop's scale), so a number means the same for
a small and a large face: 0 is a perfectly steady crop; a raw detector typically gives 1-3 crop pixels.

Streaming: each track keeps only its last ``2k+1`` frames, so memory does not grow with the video.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from facerest_cli.align.warp import affine_scale
from facerest_cli.types import invert_affine

WINDOW_K = 4  # frames each side of the moving average (0.32 s at 25 fps)


def aligned_points(matrix: np.ndarray, template: np.ndarray) -> np.ndarray:
    """The template points (crop space) mapped into the frame by the inverse of ``matrix`` (image -> crop)."""
    inv = invert_affine(matrix)
    t = np.asarray(template, np.float64)
    return t @ inv[:, :2].T + inv[:, 2]


@dataclass
class _TrackWindow:
    points: deque = field(default_factory=lambda: deque(maxlen=2 * WINDOW_K + 1))  # (5, 2) image px
    scales: deque = field(default_factory=lambda: deque(maxlen=2 * WINDOW_K + 1))
    frames: deque = field(default_factory=lambda: deque(maxlen=2 * WINDOW_K + 1))
    prev_residual: np.ndarray | None = None  # crop px, of the previous centre frame
    prev_frame: int | None = None


class JitterMeter:
    """Feed ``add(track_id, frame_index, matrix)`` in frame order; ``track_value``/``value`` give the metric."""

    def __init__(self, template: np.ndarray):
        self.template = np.asarray(template, np.float64)
        self._windows: dict[int, _TrackWindow] = {}
        self._totals: dict[int, list] = {}  # track id -> [sum of displacements, frame pairs]

    def add(self, track_id: int, frame_index: int, matrix: np.ndarray) -> None:
        w = self._windows.get(track_id)
        if w is None or (w.frames and frame_index != w.frames[-1] + 1):
            # New track, or it skipped frames (missed detections): never measure across a gap.
            w = self._windows[track_id] = _TrackWindow()
        w.points.append(aligned_points(matrix, self.template))
        w.scales.append(affine_scale(matrix))
        w.frames.append(frame_index)
        if len(w.points) < w.points.maxlen:
            return
        pts = np.stack(w.points)
        c = WINDOW_K
        residual = (pts[c] - pts.mean(axis=0)) * w.scales[c]
        if w.prev_residual is not None and w.prev_frame == w.frames[c] - 1:
            tot = self._totals.setdefault(track_id, [0.0, 0])
            tot[0] += float(np.linalg.norm(residual - w.prev_residual, axis=1).mean())
            tot[1] += 1
        w.prev_residual, w.prev_frame = residual, w.frames[c]

    def end_track(self, track_id: int) -> None:
        """Free a finished track's window (its totals stay)."""
        self._windows.pop(track_id, None)

    def track_value(self, track_id: int) -> float | None:
        s, n = self._totals.get(track_id, (0.0, 0))
        return s / n if n else None

    def value(self) -> tuple[float | None, int]:
        """Mean displacement in crop pixels over every measured frame pair of every track, and the pair count."""
        s = sum(v[0] for v in self._totals.values())
        n = sum(v[1] for v in self._totals.values())
        return (s / n if n else None), n

    def prune(self, frame_index: int, older_than: int = 16) -> None:
        """Free the windows of tracks not seen in the last ``older_than`` frames (they have ended)."""
        for tid in [t for t, w in self._windows.items() if w.frames and w.frames[-1] < frame_index - older_than]:
            del self._windows[tid]

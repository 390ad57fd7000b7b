"""Per-video and per-track statistics for ``summary.json``, gathered as frames are written (constant memory)."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facerest_cli.video.jitter import JitterMeter


@dataclass
class TrackStats:
    frames: int = 0
    first_frame: int = 0
    last_frame: int = 0
    first_time: float = 0.0
    last_time: float = 0.0
    id_sum: float = 0.0
    id_n: int = 0
    id_min: float = math.inf

    def as_dict(self, track_id: int, jitter: float | None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "track_id": track_id,
            "frames": self.frames,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "start_s": round(self.first_time, 3),
            "end_s": round(self.last_time, 3),
            "jitter_px": None if jitter is None else round(jitter, 4),
        }
        if self.id_n:
            d["identity_mean"] = round(self.id_sum / self.id_n, 4)
            d["identity_min"] = round(self.id_min, 4)
        return d


@dataclass
class VideoStats:
    """One video: filled by its sink in the writer thread (frames arrive in order)."""

    path: str
    output: str
    info: dict[str, Any]
    crop_size: int
    smoothing: bool
    template: np.ndarray
    frames: int = 0
    frames_with_faces: int = 0
    faces: int = 0
    status: str = "running"
    tracks: dict[int, TrackStats] = field(default_factory=dict)
    detection: dict[str, int] = field(default_factory=dict)  # whole-frame / window passes, scene cuts

    def __post_init__(self) -> None:
        self.jitter = JitterMeter(self.template)

    def observe(self, frame) -> None:
        """``frame``: the pipeline's ``Frame`` (faces with their final matrices, records with track ids)."""
        self.frames += 1
        n = len(frame.faces)
        self.faces += n
        self.frames_with_faces += n > 0
        t = getattr(frame.timing, "time", 0.0) or 0.0
        for fs in frame.faces:
            rec = fs.record
            tid = rec.track_id
            if tid is None:
                continue
            ts = self.tracks.get(tid)
            if ts is None:
                ts = self.tracks[tid] = TrackStats(first_frame=frame.index, first_time=t)
            ts.frames += 1
            ts.last_frame, ts.last_time = frame.index, t
            cos = rec.identity.cosine if rec.identity is not None else None
            if isinstance(cos, (int, float)) and math.isfinite(cos):
                ts.id_sum += float(cos)
                ts.id_n += 1
                ts.id_min = min(ts.id_min, float(cos))
            self.jitter.add(tid, frame.index, fs.face.matrix)
        if frame.index % 64 == 0:
            self.jitter.prune(frame.index)

    def as_dict(self) -> dict[str, Any]:
        jitter, pairs = self.jitter.value()
        return {
            "path": self.path,
            "output": self.output,
            "status": self.status,
            **self.info,
            "frames_written": self.frames,
            "frames_with_faces": self.frames_with_faces,
            "faces": self.faces,
            "smoothing": self.smoothing,
            "jitter_px": None if jitter is None else round(jitter, 4),
            "jitter_pairs": pairs,
            "crop_size": self.crop_size,
            "detection": dict(self.detection),
            "tracks": [ts.as_dict(tid, self.jitter.track_value(tid)) for tid, ts in sorted(self.tracks.items())],
        }


class VideoReport:
    """All videos of a run (thread-safe registry); ``summary()`` is what goes into summary.json."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._videos: list[VideoStats] = []

    def add(self, stats: VideoStats) -> VideoStats:
        with self._lock:
            self._videos.append(stats)
        return stats

    def summary(self) -> dict[str, Any]:
        with self._lock:
            videos = [v.as_dict() for v in self._videos]
        if not videos:
            return {}
        return {"videos": videos}

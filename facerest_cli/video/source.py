"""``VideoSource``: the pipeline's ``FrameSource`` for video inputs, and the ``TemporalStage`` batch stage.

For each video: probe it, open a ``VideoSink`` (encoder + stream copy into a temp file), then stream frames from
a decode thread; in the prepare thread each frame is detected, its faces are matched to tracks, each track's
landmarks (and so its alignment matrix) are One-Euro smoothed, and the aligned faces go to the pipeline, which
batches faces of consecutive frames into the restorer. Records get the frame index, timestamp and track id.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np

from facerest_cli.config import RunConfig
from facerest_cli.errors import InputError, UsageError
from facerest_cli.io.sources import InputItem
from facerest_cli.types import DecodedImage, FaceState, ImageMeta
from facerest_cli.video.ranges import FrameRange, parse_range
from facerest_cli.video.stats import VideoReport, VideoStats

VIDEO_META = ImageMeta(format="VIDEO", bit_depth=8, channels=3)


class VideoSource:
    """Implements ``facerest_cli.pipeline.FrameSource``; ``stage`` is its ``BatchStage`` (masks, summary)."""

    def __init__(self, cfg: RunConfig, crop_size: int = 512, template: np.ndarray | None = None):
        self.cfg = cfg
        self.vcfg = cfg.video
        self.range: FrameRange = parse_range(self.vcfg.start, self.vcfg.end)
        self.crop_size = crop_size
        self.template = template if template is not None else np.zeros((5, 2))
        self.report = VideoReport()
        self.stage = TemporalStage(self.report)
        self._lock = threading.Lock()
        self._sinks: list = []

    def check(self, items) -> None:
        """Fail before any work (exit 2) when videos are to be written with an encoder this PyAV lacks."""
        from facerest_cli.video.encode import ENCODERS, encoder_available

        if any(i.kind == "video" for i in items) and not encoder_available(self.vcfg.codec):
            raise UsageError(f"--codec {self.vcfg.codec}: this PyAV/FFmpeg build has no {ENCODERS[self.vcfg.codec]} "
                             f"encoder; use --codec x264 or ffv1")

    # ------------------------------------------------------------------------------------------- FrameSource

    def open_sink(self, item: InputItem, target: Path):
        from facerest_cli.video.encode import VideoSink
        from facerest_cli.video.probe import probe_video

        info = probe_video(item.path)
        stats = self.report.add(VideoStats(
            path=str(item.path), output=str(target), crop_size=self.crop_size, smoothing=self.vcfg.smooth,
            template=self.template, info=_info_dict(info, self.range),
        ))
        sink = VideoSink(target, info, codec=self.vcfg.codec, crf=self.vcfg.crf, preset=self.vcfg.preset,
                         upscale=self.cfg.blend.upscale, stats=stats)
        with self._lock:
            self._sinks = [s for s in self._sinks if not s.finished] + [sink]
        return sink

    def frames(self, item: InputItem, sink, ctx) -> Iterator:
        """``ctx``: the scheduler's ``pipeline.FrameContext`` (preparer, clock, stop flag, frame factory)."""
        from facerest_cli.video.decode import FrameReader
        from facerest_cli.video.detect import TrackedDetector
        from facerest_cli.video.track import IoUTracker, SceneCuts

        info = sink.info
        total = _expected_frames(info, self.range)
        reader = FrameReader(info, self.range, maxsize=self.cfg.queue_size, total=total)
        tracker = IoUTracker(smooth=self.vcfg.smooth)
        cuts = SceneCuts()
        prep = ctx.prep
        detect = None if self.cfg.aligned else TrackedDetector(prep, self.cfg.detect, self.vcfg.redetect)
        clock = ctx.clock
        try:
            it = iter(reader)
            last_seen = False
            while True:
                with clock.timed("decode"):
                    raw = next(it, None)
                if raw is None:
                    if not last_seen and not (ctx.stopping() or sink.closed):
                        raise InputError(item.path, "the video ended before its last frame could be read")
                    break
                last_seen = raw.last
                if ctx.stopping() or sink.closed:
                    return  # the run stops, or this video already failed in the writer: decode no further
                if raw.index == 0 and self.range.start is not None:
                    # The output starts at the first kept frame: the copied streams are cut and shifted there.
                    sink.set_range(offset_s=raw.timing.source_time)
                if raw.last and self.range.end is not None:
                    sink.set_range(end_s=raw.timing.source_time + _seconds(raw.timing.duration, raw.timing.time_base, info.fps))
                img = DecodedImage(item.path, item.rel_path, raw.pixels, VIDEO_META)
                t = raw.timing.source_time
                if self.cfg.aligned:
                    with clock.timed("align"):
                        faces = [prep.aligned_input(img)]
                    tracks = None
                else:
                    with clock.timed("detect"):
                        if cuts(raw.pixels):
                            tracker.reset()
                        dets = detect(raw.pixels, t, tracker)
                    with clock.timed("align"):
                        tracks = tracker.update(np.array([d.box for d in dets], np.float64).reshape(-1, 4))
                        smoothed = []
                        for d, tr in zip(dets, tracks):
                            lm, box = tr.smoother(d.landmarks, d.box, t)
                            smoothed.append(replace(d, landmarks=lm, box=box))
                        faces = prep.align(raw.pixels, smoothed)
                fr = ctx.make_frame(item, sink, img, faces, False, index=raw.index, last=raw.last, timing=raw.timing)
                for i, fs in enumerate(fr.faces):
                    rec = fs.record
                    rec.frame = raw.index
                    rec.timestamp = round(raw.timing.time, 6)
                    if tracks is not None:
                        tr = tracks[i]
                        rec.track_id = tr.id
                        if tr.gray is None:
                            tr.gray = fs.gray
                        fs.gray = tr.gray  # decided once per track: no colour flicker
                    else:
                        rec.track_id = 0
                if raw.last:
                    sink.warnings.extend(reader.warnings)
                    if detect is not None and sink.stats is not None:
                        sink.stats.detection = {"whole_frame": detect.full_passes, "windows": detect.window_passes,
                                                "scene_cuts": cuts.count}
                yield fr
        finally:
            reader.close()

    def close(self) -> None:
        """Abort every sink that was opened but not finished (an interrupted or failed run): no temp files."""
        with self._lock:
            sinks, self._sinks = self._sinks, []
        for s in sinks:
            if not s.finished:
                s.abort()


@dataclass(frozen=True)
class VideosSummary:
    """summary.json ``videos``: per-video jitter, tracks and detection passes."""

    key: ClassVar[str] = "videos"
    videos: list[dict[str, Any]]

    def to_json(self) -> list[dict[str, Any]]:
        return self.videos


class TemporalStage:
    """``BatchStage`` for video faces: keeps each track's blend mask steady, and reports per-video stats.

    Masks set by other stages (face parsing) are averaged with the track's previous mask (exponential moving
    average in crop space, which is stable because the crop follows the smoothed landmarks), so the pasted
    region does not flicker. Feathered masks (None) are identical every frame already.

    A track is keyed by its input (``FrameRef.input_id``, unique per input of the run) and track id, and only a
    mask from the one or two frames just before is blended in: a mask never crosses from one video into another,
    nor backwards in time.
    """

    name = "temporal"
    retries = False  # runs in the write thread, frame by frame in order (BatchStage)
    needs: frozenset[str] = frozenset({"mask", "record"})
    provides: frozenset[str] = frozenset({"mask"})
    finalizes: frozenset[str] = frozenset()
    MASK_EMA = 0.5  # weight of the current frame's mask
    MAX_GAP = 2  # frames: a mask older than this is not the same moment any more

    def __init__(self, report: VideoReport):
        self.report = report
        self._masks: dict[tuple[int, int], tuple[int, np.ndarray, np.ndarray | None]] = {}

    def before_restore(self, faces: list[FaceState]) -> None:
        pass

    def after_restore(self, faces: list[FaceState]) -> list[FaceState]:
        for f in faces:
            fr = f.frame
            if fr.kind != "video" or f.mask is None or f.record.track_id is None:
                continue
            key = (fr.input_id, f.record.track_id)
            cur = np.asarray(f.mask, np.float32)
            prev = self._masks.get(key)
            base = None
            if prev is not None:
                p_index, p_mask, p_base = prev
                if p_index == fr.index:  # the same face again (a retry): blend with what came before it
                    base = p_base
                elif 0 < fr.index - p_index <= self.MAX_GAP and p_mask.shape == cur.shape:
                    base = p_mask
            out = cur if base is None else (self.MASK_EMA * cur + (1.0 - self.MASK_EMA) * base).astype(np.float32)
            f.mask = out
            self._masks[key] = (fr.index, out, base)
        if len(self._masks) > 64:  # drop tracks that ended
            newest = max(v[0] for v in self._masks.values())
            self._masks = {k: v for k, v in self._masks.items() if v[0] >= newest - 8}
        return []

    def summary(self) -> VideosSummary | None:
        videos = self.report.summary().get("videos")
        return VideosSummary(videos) if videos else None


def _seconds(duration, time_base, fps) -> float:
    if duration:
        return float(duration * time_base)
    return 1.0 / float(fps) if fps else 0.0


def _expected_frames(info, rng: FrameRange) -> int | None:
    n = info.estimated_frames
    fps = float(info.fps) if info.fps else None
    if rng.is_full:
        return n
    start = 0
    if rng.start is not None:
        start = rng.start.frame if rng.start.frame is not None else int(round(rng.start.seconds * fps)) if fps else 0
    end = n
    if rng.end is not None:
        e = rng.end.frame if rng.end.frame is not None else int(round(rng.end.seconds * fps)) if fps else None
        end = e if end is None or (e is not None and e < end) else end
    return max(0, end - start) if end is not None else None


def _info_dict(info, rng: FrameRange) -> dict:
    w, h = info.upright_size
    return {
        "width": w,
        "height": h,
        "fps": float(info.fps) if info.fps else None,
        "source_frames": info.frames or None,
        "source_duration_s": round(info.duration_s, 3) if info.duration_s else None,
        "rotation": info.rotation,
        "range": None if rng.is_full else rng.describe(),
    }

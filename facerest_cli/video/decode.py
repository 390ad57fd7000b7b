"""Streamed decoding: a background thread demuxes and decodes one video stream into a small bounded queue.

The thread converts each frame to an upright BGR array (swscale and the decoder release the GIL, so this
overlaps with detection in the prepare thread and with inference and encoding further down the pipeline). At
most ``maxsize`` decoded frames wait in the queue: memory does not depend on the length of the video.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from facerest_cli.errors import InputError
from facerest_cli.streams import END, StoppableQueue
from facerest_cli.video.color import ColorTags, frame_to_bgr
from facerest_cli.video.probe import VideoInfo, ffmpeg_reason, open_input
from facerest_cli.video.ranges import FrameRange

# Decoding errors tolerated (packets skipped, with a warning) before the video is declared corrupt.
MAX_BAD_PACKETS = 25
# A video whose decoded frames stop this long before the stream's declared end is truncated.
TRUNCATION_TOLERANCE_S = 0.5


@dataclass
class FrameTiming:
    """What the sink and the progress display need about a frame (``Frame.timing``)."""

    pts: int  # source pts (time_base units)
    out_pts: int  # pts in the output (range start subtracted)
    duration: int | None  # in time_base units
    time: float  # output presentation time, seconds
    source_time: float  # seconds from the start of the source
    time_base: Fraction
    total: int | None  # expected frame count of the output (for the ETA)
    colors: ColorTags = ColorTags()  # the source's colour tags (conversions and output tagging)


@dataclass
class RawFrame:
    index: int  # 0-based index in the output
    pixels: np.ndarray  # upright (H, W, 3) uint8 BGR
    timing: FrameTiming
    last: bool = False  # the last frame of the output (the sink is finished after it)


class FrameReader:
    """Iterate decoded frames of ``info``'s video stream within ``rng``; raises ``InputError`` on failure.

    ``warnings`` collects what was repaired (skipped corrupt packets, non-increasing timestamps).
    """

    def __init__(self, info: VideoInfo, rng: FrameRange, maxsize: int = 4, total: int | None = None):
        self.info = info
        self.rng = rng
        self.total = total
        self.warnings: list[str] = []
        self.offset_pts: int | None = None  # source pts of the first frame kept (the output starts there)
        self._stop = threading.Event()
        self._q = StoppableQueue(max(1, maxsize), self._stop)
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------- consumer

    def __iter__(self) -> Iterator[RawFrame]:
        self._thread = threading.Thread(target=self._run, name="facerest-decode", daemon=True)
        self._thread.start()
        while True:
            item = self._q.get()
            if item is END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        while self._thread is not None and self._thread.is_alive():
            self._q.drain()
            self._thread.join(timeout=0.05)

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --------------------------------------------------------------------------------------------- thread

    def _put(self, obj) -> bool:
        return self._q.put(obj)

    def _run(self) -> None:
        try:
            self._decode()
        except InputError as e:
            self._put(e)
        except Exception as e:  # noqa: BLE001 - reported as this video's failure, the run goes on
            self._put(InputError(self.info.path, f"decoding failed: {ffmpeg_reason(e)}"))
        finally:
            self._put(END)

    def _decode(self) -> None:
        import av

        info = self.info
        tb = info.time_base
        path = Path(info.path)
        start, end = self.rng.start, self.rng.end
        with open_input(path) as c:
            vs = c.streams[info.stream_index]
            vs.thread_type = "AUTO"
            seek_s = start.seconds if start is not None and start.seconds is not None else None
            if seek_s:
                target = info.start_pts + int(seek_s / tb)
                try:
                    c.seek(target, stream=vs, backward=True, any_frame=False)
                except av.error.FFmpegError as e:
                    raise InputError(path, f"cannot seek to --start {start}: {ffmpeg_reason(e)}") from None
            src_index = 0  # decoded frames (meaningful for frame-number ranges: no seek then)
            out_index = 0
            last_pts: int | None = None
            nominal = int(round(1 / (info.fps * tb))) if info.fps else 1
            bad = 0
            repaired = 0
            pending: RawFrame | None = None
            last_end_s: float | None = None
            for packet in c.demux(vs):
                if self._stop.is_set():
                    return
                try:
                    frames = packet.decode()
                except (av.error.InvalidDataError, av.error.UndefinedError) as e:
                    bad += 1
                    if bad > MAX_BAD_PACKETS:
                        raise InputError(path, f"corrupt video: more than {MAX_BAD_PACKETS} undecodable packets "
                                               f"(last: {ffmpeg_reason(e)})") from None
                    continue
                for f in frames:
                    pts = f.pts
                    if pts is None:
                        pts = (last_pts + nominal) if last_pts is not None else info.start_pts
                    if last_pts is not None and pts <= last_pts:
                        pts = last_pts + 1
                        repaired += 1
                    last_pts = pts
                    t_src = float((pts - info.start_pts) * tb)
                    idx = src_index
                    src_index += 1
                    # Range: frame numbers count decoded frames; times compare presentation times.
                    if start is not None:
                        if start.frame is not None and idx < start.frame:
                            continue
                        if start.seconds is not None and t_src < start.seconds - 1e-6:
                            continue
                    if end is not None:
                        if (end.frame is not None and idx >= end.frame) or (end.seconds is not None and t_src >= end.seconds - 1e-6):
                            if pending is None:
                                raise InputError(path, f"no video frames in the range {self.rng.describe()}")
                            pending.timing.total = out_index
                            self._flush(pending, last=True)
                            pending = None
                            self._finish_warnings(bad, repaired)
                            return
                    if self.offset_pts is None:
                        self.offset_pts = 0 if self.rng.start is None else pts
                    dur = int(f.duration) if getattr(f, "duration", 0) else None
                    colors = ColorTags.of(f)
                    px = self._to_bgr(f, colors)
                    out_pts = pts - self.offset_pts
                    timing = FrameTiming(pts=pts, out_pts=out_pts, duration=dur, time=float(out_pts * tb), source_time=t_src,
                                         time_base=tb, total=self.total, colors=colors)
                    if pending is not None and not self._flush(pending, last=False):
                        return
                    pending = RawFrame(out_index, px, timing)
                    out_index += 1
                    last_end_s = float((pts + (dur or nominal) - info.start_pts) * tb)
            if pending is None:
                what = f" in the range {self.rng.describe()}" if not self.rng.is_full else ""
                raise InputError(path, f"no decodable video frames{what}")
            # Truncation: the video stream's index says it lasts longer than what could be decoded (an error), or
            # only the container's duration does (a warning: other streams may simply outlast the video).
            if self.rng.end is None and last_end_s is not None:
                declared = info.duration_s or info.container_duration_s
                if declared and last_end_s < declared - max(TRUNCATION_TOLERANCE_S, 2 / float(info.fps or 25)):
                    msg = f"frames stop at {last_end_s:.2f}s of {declared:.2f}s"
                    if info.duration_s:
                        raise InputError(path, f"truncated or corrupt video: {msg}")
                    self.warnings.append(f"the file may be truncated: video {msg} the container declares")
            if self.total is not None and pending.timing.total != out_index:
                pending.timing.total = out_index
            self._finish_warnings(bad, repaired)
            self._flush(pending, last=True)

    def _finish_warnings(self, bad: int, repaired: int) -> None:
        if bad:
            self.warnings.append(f"{bad} undecodable video packet(s) skipped")
        if repaired:
            self.warnings.append(f"{repaired} non-increasing video timestamp(s) repaired")

    def _flush(self, fr: RawFrame | None, last: bool) -> bool:
        if fr is None:
            return True
        fr.last = last
        return self._put(fr)

    def _to_bgr(self, f, colors: ColorTags) -> np.ndarray:
        bgr = frame_to_bgr(f, colors)
        rot = self.info.rotation
        if rot:
            bgr = np.ascontiguousarray(np.rot90(bgr, k=rot // 90))
        return bgr

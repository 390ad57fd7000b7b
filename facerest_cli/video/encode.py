"""The video ``FrameSink``: encodes restored frames and copies the other streams, streaming, into a temp file that
is renamed over the output only when the video is complete.

* Video: H.264 (libx264, yuv420p) by default, or H.265 (libx265) or FFV1 (lossless, bgr0: exactly the frames we
  produced). The source's time base, timestamps (VFR stays VFR), frame durations, display rotation and colour
  tags are kept, and so are the container's tags and the video's language, title and start timecode.
* Audio, subtitle and data streams come from a second demuxer on the same input file, muxed as the video timeline
  advances (never buffered whole): packets are copied byte for byte when the output container accepts the codec;
  audio that it does not accept is re-encoded to AAC (with a warning); a QuickTime timecode track is rebuilt from
  its start timecode; a data stream is copied only if a trial file of the output format accepts it; anything that
  cannot be carried is dropped and named in a warning.
"""

from __future__ import annotations

import errno
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from facerest_cli.errors import DiskFullError, InputError
from facerest_cli.io.sinks import create_temp, fsync_dir
from facerest_cli.video.color import ColorTags, bgr_to_frame
from facerest_cli.video.probe import VideoInfo, ffmpeg_reason, open_input

ENCODERS = {"x264": "libx264", "x265": "libx265", "ffv1": "ffv1"}
# Output extension -> FFmpeg muxer. m4v is written by the mp4 muxer (the "ipod" one refuses H.265).
MUXERS = {"mp4": "mp4", "m4v": "mp4", "mov": "mov", "mkv": "matroska"}


def encoder_available(codec: str) -> bool:
    import av

    try:
        av.codec.Codec(ENCODERS[codec], "w")
        return True
    except Exception:  # noqa: BLE001 - av raises UnknownCodecError / ValueError depending on the build
        return False


class VideoSink:
    """``FrameSink`` for one video. ``write`` runs in the pipeline's writer thread, frames in order."""

    def __init__(self, path: Path, info: VideoInfo, *, codec: str = "x264", crf: int = 18, preset: str = "medium",
                 upscale: int = 1, stats=None):
        import av

        self.path = Path(path)
        self.info = info
        self.warnings: list[str] = []
        self.stats = stats
        self.frames = 0
        self._closed = False
        self._upscale = upscale
        self._codec = codec
        self._crf, self._preset = crf, preset
        self._tags: ColorTags | None = None
        self._vs = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = _new_temp_path(self.path.parent)
        ext = self.path.suffix.lower().lstrip(".")
        try:
            self._out = av.open(str(self._tmp), "w", format=MUXERS.get(ext, "matroska"))
        except Exception as e:  # noqa: BLE001
            self._unlink()
            raise InputError(info.path, f"cannot create {self.path}: {ffmpeg_reason(e)}") from None
        try:
            self._add_video_stream()  # first, so the output keeps the usual stream order (video, then the rest)
            self._copier = StreamCopier(info, self._out, self.warnings)
        except InputError:
            self.abort()
            raise
        except Exception as e:  # noqa: BLE001
            self.abort()
            raise InputError(info.path, f"cannot set up the output video: {ffmpeg_reason(e)}") from None

    # ---------------------------------------------------------------------------------------------- video

    def _add_video_stream(self) -> None:
        info = self.info
        w, h = info.width * self._upscale, info.height * self._upscale
        enc = ENCODERS[self._codec]
        if self._codec == "ffv1":
            pix_fmt, options = "bgr0", {"level": "3", "g": "1", "slicecrc": "1", "slices": "4"}
        else:
            # 4:2:0 needs even sizes; an odd-sized source is written 4:4:4 rather than cropped or scaled.
            pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
            if pix_fmt != "yuv420p":
                self.warnings.append(f"odd frame size {w}x{h}: encoded as {pix_fmt} (4:2:0 needs even sizes)")
            options = {"crf": str(self._crf), "preset": self._preset}
            if self._codec == "x265":
                options["x265-params"] = "log-level=error"
        if info.pix_fmt and any(s in info.pix_fmt for s in ("10", "12", "16")) and self._codec != "ffv1":
            self.warnings.append(f"{info.pix_fmt} source written as 8-bit {pix_fmt}")
        rate = info.fps if info.fps and info.fps > 0 else None
        vs = self._out.add_stream(enc, rate=rate, options=options)
        vs.width, vs.height = w, h
        vs.pix_fmt = pix_fmt
        vs.time_base = info.time_base
        vs.codec_context.time_base = info.time_base
        if rate:
            vs.codec_context.framerate = rate
        if self._codec == "x265" and self.path.suffix.lower() in (".mp4", ".m4v", ".mov"):
            vs.codec_tag = "hvc1"  # what Apple players require for H.265 in ISO-BMFF
        if info.rotation:
            vs.set_display_rotation(info.rotation)
        self._vs = vs
        self._pix_fmt = pix_fmt

    def _set_colors(self, colors: ColorTags | None) -> None:
        """At the first frame (before the encoder opens): the source's colour tags, used both ways."""
        self._tags = colors or ColorTags()
        if self._pix_fmt == "bgr0":
            return
        cc = self._vs.codec_context
        for attr in ("colorspace", "color_range", "color_primaries", "color_trc"):
            try:
                setattr(cc, attr, getattr(self._tags, attr))
            except (AttributeError, ValueError, TypeError):
                pass

    def write(self, pixels: np.ndarray, frame) -> None:
        """``pixels``: the restored upright frame, ``(H, W, 3)`` uint8 BGR; ``frame``: the pipeline's ``Frame``."""
        import av

        if self._closed:
            return  # aborted (its input failed): never touch a closed container, PyAV would crash
        timing = frame.timing
        try:
            if self._tags is None:
                self._set_colors(getattr(timing, "colors", None))
            rot = self.info.rotation
            stored = np.ascontiguousarray(np.rot90(pixels, k=-(rot // 90))) if rot else pixels
            if stored.ndim == 3 and stored.shape[2] != 3:
                stored = np.ascontiguousarray(stored[:, :, :3])
            vf = bgr_to_frame(stored, self._pix_fmt, self._tags or ColorTags())
            vf.pts = timing.out_pts
            vf.time_base = timing.time_base
            if timing.duration:
                vf.duration = timing.duration
            for pkt in self._vs.encode(vf):
                self._out.mux(pkt)
            # Other streams up to this frame's end, so the file stays interleaved and nothing piles up.
            self._copier.advance(self._copier.offset_s + timing.time + _frame_seconds(timing))
        except av.error.FFmpegError as e:
            raise self._error(e, f"encoding frame {frame.index} failed") from None
        except OSError as e:
            raise self._error(e, f"writing frame {frame.index} failed") from None
        self.frames += 1
        if self.stats is not None:
            self.stats.observe(frame)

    def set_range(self, offset_s: float | None = None, end_s: float | None = None) -> None:
        """--start/--end: the source time of the first frame written, and of the end of the last one. Copied
        streams are cut to that span and shifted like the video. Called before the frames concerned are queued."""
        self._copier.set_range(offset_s, end_s)

    def _error(self, e: Exception, what: str) -> Exception:
        if getattr(e, "errno", None) == errno.ENOSPC:
            return DiskFullError(f"disk full while writing {self.path}")
        return InputError(self.info.path, f"{what}: {ffmpeg_reason(e)}")

    # ------------------------------------------------------------------------------------------- lifecycle

    def finish(self) -> list[str]:
        import av

        if self._closed:
            return []
        try:
            if self.frames:
                for pkt in self._vs.encode(None):
                    self._out.mux(pkt)
            self._copier.advance(math.inf)
            self._out.close()
            self._copier.close()
            self._closed = True
            with open(self._tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(self._tmp, self.path)
            fsync_dir(self.path.parent)
        except (av.error.FFmpegError, OSError) as e:
            self.abort()
            raise self._error(e, "finishing the video failed") from None
        self.warnings.extend(w for w in self._copier.warnings_late if w not in self.warnings)
        if self.stats is not None:
            self.stats.status = "completed"
        return [str(self.path)]

    def abort(self) -> None:
        """Close everything and delete the temp file: no partial video is ever left behind."""
        if not self._closed:
            self._closed = True
            for closer in (getattr(self, "_copier", None), getattr(self, "_out", None)):
                if closer is None:
                    continue
                try:
                    closer.close()
                except Exception:  # noqa: BLE001 - already failing; the temp file is removed below
                    pass
        if self.stats is not None and self.stats.status == "running":
            self.stats.status = "failed"
        self._unlink()

    def _unlink(self) -> None:
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass

    @property
    def closed(self) -> bool:
        """Finished or aborted."""
        return self._closed

    @property
    def finished(self) -> bool:
        return self._closed and not self._tmp.exists()


def _frame_seconds(timing) -> float:
    if timing.duration:
        return float(timing.duration * timing.time_base)
    return 0.0


# ------------------------------------------------------------------------------------------ other streams


class StreamCopier:
    """Copies (or re-encodes, or drops with a warning) every stream but the restored video, from a second
    demuxer on the input, as far as the video has got (``advance``)."""

    def __init__(self, info: VideoInfo, out, warnings: list[str], *, offset_s: float = 0.0, end_s: float | None = None):
        import av

        self.info = info
        self.out = out
        self.warnings = warnings
        self.warnings_late: list[str] = []
        self.offset_s = offset_s
        self.end_s = end_s
        self.trim = offset_s > 0 or end_s is not None  # only a --start/--end range drops or shifts packets
        self._map: dict[int, object] = {}  # input stream index -> output stream (copy) or _Transcoder
        self._in = None
        self._iter = None
        self._next = None
        self._done = False
        fmt_name = out.format.name
        inp = open_input(info.path)
        self._in = inp
        _copy_metadata(inp, out, info.stream_index)
        for s in inp.streams:
            if s.index == info.stream_index:
                continue
            what = f"{s.type} stream #{s.index} ({_codec_name(s)})"
            if s.type == "video":
                kind = "cover picture" if s.disposition & av.stream.Disposition.attached_pic else "second video stream"
                warnings.append(f"{what} dropped: {kind}s are not carried over (only the main video is restored)")
                continue
            if s.type == "attachment":
                self._attach(s, what)
                continue
            if s.type not in ("audio", "subtitle", "data"):
                warnings.append(f"{what} dropped: unknown stream type")
                continue
            if s.type == "data":
                if s.metadata.get("timecode") and out.streams.video:
                    # A QuickTime timecode track: the muxer rebuilds it from the video stream's start timecode.
                    out.streams.video[0].metadata["timecode"] = s.metadata["timecode"]
                    continue
                problem = _data_copy_problem(info.path, s, out.format.name)
                if problem:
                    warnings.append(f"{what} dropped: the {fmt_name} container cannot carry it ({problem})")
                    continue
            try:
                o = out.add_stream_from_template(s)
                self._map[s.index] = o
                if s.metadata:
                    o.metadata.update(s.metadata)
                continue
            except Exception as e:  # noqa: BLE001 - ValueError: the muxer does not accept this codec
                reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            if s.type == "audio":
                try:
                    self._map[s.index] = _Transcoder(s, out)
                    warnings.append(f"{what} re-encoded to AAC: the {fmt_name} container cannot hold {_codec_name(s)} ({reason})")
                    continue
                except Exception as e:  # noqa: BLE001
                    reason = f"{reason}; AAC re-encoding failed too: {ffmpeg_reason(e)}"
            warnings.append(f"{what} dropped: the {fmt_name} container cannot hold it ({reason})")
        if self._map:
            self._iter = inp.demux(*[inp.streams[i] for i in self._map])
        else:
            self.close()

    def set_range(self, offset_s: float | None, end_s: float | None) -> None:
        if offset_s is not None:
            self.offset_s = offset_s
        if end_s is not None:
            self.end_s = end_s
        self.trim = self.offset_s > 0 or self.end_s is not None

    def _attach(self, s, what: str) -> None:
        try:
            name = s.metadata.get("filename") or f"attachment{s.index}"
            mimetype = s.metadata.get("mimetype") or getattr(s, "mimetype", None) or "application/octet-stream"
            self.out.add_attachment(name, mimetype, bytes(s.data))
        except Exception as e:  # noqa: BLE001
            self.warnings.append(f"{what} dropped: {str(e).splitlines()[0] if str(e) else 'not supported by this container'}")

    def _time(self, pkt) -> float | None:
        """Seconds from the video stream's first frame (the clock ``advance`` is given)."""
        ts = pkt.dts if pkt.dts is not None else pkt.pts
        if ts is None or pkt.time_base is None:
            return None
        return float(ts * pkt.time_base) - float(self.info.start_pts * self.info.time_base)

    def advance(self, until_s: float) -> None:
        """Mux every packet whose time (seconds from the video's first frame, in the source) is < ``until_s``."""
        if self._done or self._iter is None:
            return
        import av

        while True:
            if self._next is None:
                try:
                    self._next = next(self._iter)
                except StopIteration:
                    self._finish_transcoders()
                    self.close()
                    return
                except av.error.FFmpegError as e:
                    self.warnings_late.append(f"reading the audio/subtitle streams stopped early: {ffmpeg_reason(e)}")
                    self._finish_transcoders()
                    self.close()
                    return
            pkt = self._next
            if pkt.size == 0:  # flush marker of a stream
                self._next = None
                continue
            t = self._time(pkt)
            if t is not None and t >= until_s:
                return
            self._next = None
            if self.trim and t is not None:
                if self.end_s is not None and t >= self.end_s + 2.0:
                    # Well past --end (allowing for interleaving): stop reading the rest of the file.
                    self._finish_transcoders()
                    self.close()
                    return
                if t < self.offset_s - 1e-6 or (self.end_s is not None and t >= self.end_s):
                    continue  # outside --start/--end
            target = self._map[pkt.stream.index]
            if isinstance(target, _Transcoder):
                for p in target.push(pkt, self.offset_s):
                    self.out.mux(p)
                continue
            if self.offset_s:
                shift = int(round(self.offset_s / pkt.time_base))
                if pkt.pts is not None:
                    pkt.pts -= shift
                if pkt.dts is not None:
                    pkt.dts -= shift
            pkt.stream = target
            self.out.mux(pkt)

    def _finish_transcoders(self) -> None:
        for t in self._map.values():
            if isinstance(t, _Transcoder):
                for p in t.flush():
                    self.out.mux(p)

    def close(self) -> None:
        self._done = True
        if self._in is not None:
            try:
                self._in.close()
            finally:
                self._in = None


_SKIP_META = {"encoder", "major_brand", "minor_version", "compatible_brands", "duration", "DURATION"}


def _copy_metadata(inp, out, video_index: int) -> None:
    """Container tags (title, dates, ...) and the video stream's (language, title, timecode) carry over."""
    try:
        out.metadata.update({k: v for k, v in inp.metadata.items() if k not in _SKIP_META})
        src = inp.streams[video_index].metadata
        dst = out.streams.video[0].metadata if out.streams.video else None
        if dst is not None:
            dst.update({k: v for k, v in src.items() if k in ("language", "title", "timecode", "creation_time")})
    except Exception:  # noqa: BLE001 - metadata is best effort; the pictures and sound are what matter
        pass


def _data_copy_problem(path: Path, s, fmt: str) -> str | None:
    """Data streams are often muxer-specific: copy one only if a trial file of the same format (its first packets
    included) can be written and closed. Returns why not, or None."""
    import io

    import av

    try:
        with av.open(str(path), "r") as inp, av.open(io.BytesIO(), "w", format=fmt) as trial:
            o = trial.add_stream_from_template(inp.streams[s.index])
            n = seen = 0
            for pkt in inp.demux():  # the first few packets of this stream, reading at most 500 packets
                seen += 1
                if n >= 3 or seen > 500:
                    break
                if pkt.stream.index != s.index or pkt.size == 0:
                    continue
                pkt.stream = o
                trial.mux(pkt)
                n += 1
        return None
    except Exception as e:  # noqa: BLE001
        return ffmpeg_reason(e)


class _Transcoder:
    """Audio the output container cannot hold: decoded and re-encoded to AAC, streaming."""

    def __init__(self, s, out):
        import av

        layout = s.codec_context.layout.name if s.codec_context.layout else "stereo"
        rate = s.codec_context.sample_rate or 48000
        self.out_stream = out.add_stream("aac", rate=rate, layout=layout)
        self.in_stream = s
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        self.fifo = av.AudioFifo()
        self.rate = rate
        self.pos: int | None = None

    def push(self, pkt, offset_s: float):
        out = []
        for frame in self.in_stream.codec_context.decode(pkt):
            if self.pos is None:
                t0 = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
                self.pos = max(0, int(round((t0 - offset_s) * self.rate)))
            for rf in self.resampler.resample(frame):
                rf.pts = None
                self.fifo.write(rf)
            out += self._drain(final=False)
        return out

    def _drain(self, final: bool):
        out = []
        n = self.out_stream.codec_context.frame_size or 1024
        while self.fifo.samples >= n or (final and self.fifo.samples > 0):
            f = self.fifo.read(min(n, self.fifo.samples))
            f.pts = self.pos
            f.time_base = Fraction(1, self.rate)
            self.pos = (self.pos or 0) + f.samples
            out += self.out_stream.encode(f)
        return out

    def flush(self):
        out = []
        try:
            for frame in self.in_stream.codec_context.decode(None):
                for rf in self.resampler.resample(frame):
                    rf.pts = None
                    self.fifo.write(rf)
        except Exception:  # noqa: BLE001
            pass
        out += self._drain(final=True)
        out += self.out_stream.encode(None)
        return out


def _codec_name(s) -> str:
    try:
        if s.codec_context is not None:
            return s.codec_context.name
    except Exception:  # noqa: BLE001
        pass
    try:
        return s.codec.name
    except Exception:  # noqa: BLE001
        return "unknown codec"


def _new_temp_path(directory: Path) -> Path:
    """A new hidden temp file beside the output, named like every facerest temp file (so a resumed run cleans up
    after a killed one); the encoder reopens it by name."""
    fd, name = create_temp(directory)
    os.close(fd)
    return Path(name)

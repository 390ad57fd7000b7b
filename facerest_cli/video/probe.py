"""What a video file holds: recognised by content (a few magic bytes), then probed with PyAV.

``sniff_kind`` reads 16 bytes and never imports PyAV, so input discovery stays cheap; ``probe_video`` opens the
container and describes the video stream to restore and every other stream (to copy or to warn about).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from facerest_cli.errors import InputError

# ISO-BMFF brands that are still pictures (HEIF/AVIF), not videos.
_IMAGE_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}
_QT_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}


def sniff(head: bytes) -> str | None:
    """'image', 'video' or None from the first bytes of a file."""
    if head.startswith(b"\xff\xd8\xff") or head.startswith(b"\x89PNG\r\n\x1a\n") or head.startswith(b"BM"):
        return "image"
    if head[:4] in (b"II*\x00", b"MM\x00*") or head.startswith(b"GIF8"):
        return "image"
    if head[:4] == b"RIFF":
        return "image" if head[8:12] == b"WEBP" else ("video" if head[8:12] == b"AVI " else None)
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska / WebM
        return "video"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "image" if head[8:12] in _IMAGE_BRANDS else "video"
    if len(head) >= 8 and head[4:8] in _QT_ATOMS:  # QuickTime files that do not start with ftyp
        return "video"
    return None


def sniff_kind(path: Path, by_extension: str | None) -> str | None:
    """The input kind of ``path``: a file whose content is a video is a video whatever its name (a film named
    .jpg, or with an unknown extension); a picture named like a video is an image; otherwise the extension
    decides (so unknown non-video files stay skipped, and unreadable ones are reported by the decoder)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return by_extension
    found = sniff(head)
    if found == "video" or (found == "image" and by_extension == "video"):
        return found
    return by_extension


@dataclass(frozen=True)
class StreamInfo:
    index: int
    type: str  # video | audio | subtitle | data | attachment | unknown
    codec: str
    language: str | None = None

    def describe(self) -> str:
        lang = f", {self.language}" if self.language else ""
        return f"stream #{self.index} ({self.type} {self.codec}{lang})"


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    stream_index: int
    codec: str
    width: int  # as stored (before the display rotation)
    height: int
    rotation: int  # display rotation, degrees counter-clockwise (PyAV's VideoFrame.rotation): 0, 90, -90, 180
    time_base: Fraction
    fps: Fraction | None  # average frame rate (None if unknown)
    start_pts: int  # first pts of the video stream (stream.start_time), in time_base units
    duration_s: float | None  # video stream duration in seconds, when the container says
    container_duration_s: float | None  # the whole file's duration (all streams), when known
    frames: int  # frame count declared by the container (0 = unknown)
    pix_fmt: str | None
    streams: tuple[StreamInfo, ...] = field(default_factory=tuple)

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) as displayed."""
        return (self.height, self.width) if self.rotation % 180 else (self.width, self.height)

    @property
    def estimated_frames(self) -> int | None:
        if self.frames > 0:
            return self.frames
        if self.duration_s and self.fps:
            return int(round(self.duration_s * float(self.fps)))
        return None


def open_input(path: Path):
    """``av.open`` for reading, with FFmpeg's errors turned into one-line ``InputError``s."""
    import av

    try:
        return av.open(str(path), "r")
    except av.error.FFmpegError as e:
        hint = _diagnose_isobmff(Path(path))
        raise InputError(path, hint or f"not a readable video: {ffmpeg_reason(e)}") from None
    except OSError as e:
        raise InputError(path, f"cannot open: {e.strerror or e}") from None


def _diagnose_isobmff(path: Path) -> str | None:
    """Why an MP4/MOV file cannot be opened, from its top-level boxes (the usual case: a truncated copy or an
    interrupted recording, whose 'moov' index is missing or cut)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if size == 0:
                return "empty file (0 bytes)"
            pos, seen = 0, []
            while pos + 8 <= size and len(seen) < 10000:
                f.seek(pos)
                hdr = f.read(16)
                n, kind = int.from_bytes(hdr[:4], "big"), hdr[4:8]
                if n == 1 and len(hdr) >= 16:
                    n = int.from_bytes(hdr[8:16], "big")
                elif n == 0:
                    n = size - pos
                if n < 8 or not kind.isalnum() and kind not in (b"free", b"skip", b"wide"):
                    return None if not seen else f"corrupt MP4/MOV: invalid box at byte {pos}"
                seen.append(kind)
                if pos + n > size:
                    what = "'moov' index" if kind == b"moov" else f"'{kind.decode('latin-1')}' box"
                    return (f"truncated MP4/MOV: the {what} at byte {pos} needs {n} bytes but the file ends after "
                            f"{size - pos}" + ("" if b"moov" in seen[:-1] or kind == b"moov" else "; no 'moov' index (the copy or recording did not finish)"))
                pos += n
            if seen and seen[0] == b"ftyp" and b"moov" not in seen:
                return "incomplete MP4/MOV: no 'moov' index (the copy or recording did not finish)"
    except OSError:
        return None
    return None


def ffmpeg_reason(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    log = getattr(e, "log", None)
    if log and len(log) >= 3 and log[2]:
        detail = str(log[2]).strip()
        if detail:
            msg = f"{msg} ({detail})"
    return msg.splitlines()[0] if msg else type(e).__name__


def main_video_stream(container):
    """The stream to restore: the first video stream that is not an attached picture (cover art)."""
    import av

    for s in container.streams.video:
        if not (s.disposition & av.stream.Disposition.attached_pic):
            return s
    return None


def probe_video(path: Path) -> VideoInfo:
    """Describe ``path``; raises ``InputError`` when it is not a video PyAV can decode."""
    path = Path(path)
    with open_input(path) as c:
        return describe(path, c)


def describe(path: Path, c) -> VideoInfo:
    vs = main_video_stream(c)
    if vs is None:
        raise InputError(path, "no video stream in this file")
    ctx = vs.codec_context
    if ctx is None or not ctx.width or not ctx.height:
        raise InputError(path, f"video stream #{vs.index} has no decodable picture size (codec {vs.codec_context.name if ctx else '?'})")
    tb = vs.time_base or Fraction(1, 90000)
    duration_s = float(vs.duration * tb) if vs.duration else None
    streams = tuple(
        StreamInfo(s.index, s.type, (s.codec_context.name if s.codec_context is not None else s.codec.name if getattr(s, "codec", None) else "unknown"),
                   s.language or None)
        for s in c.streams
    )
    fps = vs.average_rate or vs.guessed_rate or None
    return VideoInfo(
        path=path,
        stream_index=vs.index,
        codec=ctx.name,
        width=int(ctx.width),
        height=int(ctx.height),
        rotation=_stream_rotation(vs),
        time_base=Fraction(tb),
        fps=Fraction(fps) if fps else None,
        start_pts=int(vs.start_time or 0),
        duration_s=duration_s,
        container_duration_s=(c.duration / 1_000_000) if c.duration else None,
        frames=int(vs.frames or 0),
        pix_fmt=getattr(ctx, "pix_fmt", None),
        streams=streams,
    )


def _stream_rotation(vs) -> int:
    """The display rotation of a stream, read from its first decoded frame (PyAV exposes it there)."""
    # PyAV has no stream-level accessor; the decoders copy the container's display matrix onto each frame. The
    # caller's decode loop also sees it: probing only needs it to size the sink, so decode one frame here.
    try:
        container = vs.container
        for frame in container.decode(vs):
            r = int(round(frame.rotation or 0))
            return ((r + 180) % 360) - 180 if r not in (180, -180) else 180
    except Exception:  # noqa: BLE001 - a file that cannot decode one frame fails later with a clear reason
        return 0
    return 0

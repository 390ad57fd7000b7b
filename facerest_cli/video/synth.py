"""Synthetic test clips: a face picture moving and scaling over a textured background, with an optional sine tone.

Used by ``facerest bench --stage video`` (to measure frames/s on a generated clip) and by the tests, which must
build their videos at run time from ../shared pictures (no binary fixtures). Everything is written with PyAV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass
class ClipInfo:
    path: Path
    frames: int
    fps: Fraction
    size: tuple[int, int]  # (width, height)
    pts: list[int] = field(default_factory=list)  # video pts, in time_base units
    time_base: Fraction = Fraction(1, 1)
    face_boxes: list[tuple[int, int, int, int] | None] = field(default_factory=list)  # x0, y0, x1, y1 per frame
    audio_packets: int = 0


def _background(w: int, h: int, seed: int) -> np.ndarray:
    """A smooth, textured BGR background (gradients plus soft blobs): cheap to encode, nothing face-like."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = np.stack([60 + 80 * xx / w, 70 + 60 * yy / h, 90 + 40 * (xx + yy) / (w + h)], axis=2)
    small = rng.uniform(-25, 25, (max(2, h // 40), max(2, w // 40), 3)).astype(np.float32)
    bg += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(bg, 0, 255).astype(np.uint8)


def _face_alpha(n: int) -> np.ndarray:
    """A soft elliptical alpha for an ``n`` x ``n`` face picture, so no square edge shows."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    c = (n - 1) / 2.0
    r = np.sqrt(((xx - c) / (0.48 * n)) ** 2 + ((yy - c) / (0.52 * n)) ** 2)
    return np.clip((1.0 - r) / 0.12, 0.0, 1.0)


def render_frame(bg: np.ndarray, face: np.ndarray | None, cx: float, cy: float, side: float) -> tuple[np.ndarray, tuple | None]:
    """``bg`` with the (square) face picture scaled to ``side`` pixels and centred at (cx, cy), with sub-pixel
    precision (so smooth motion is smooth); returns the frame and the face box (clipped), or None."""
    import cv2

    out = bg.copy()
    if face is None or side < 8:
        return out, None
    h, w = bg.shape[:2]
    n = face.shape[0]
    k = side / n
    # face pixel p -> frame pixel (p + 0.5) * k - 0.5 + (cx - side / 2) + 0.5 (pixel centres)
    m = np.array([[k, 0, cx - side / 2 + 0.5 * k - 0.5], [0, k, cy - side / 2 + 0.5 * k - 0.5]], np.float64)
    x0, y0 = max(0, int(np.floor(cx - side / 2)) - 1), max(0, int(np.floor(cy - side / 2)) - 1)
    x1, y1 = min(w, int(np.ceil(cx + side / 2)) + 2), min(h, int(np.ceil(cy + side / 2)) + 2)
    if x1 <= x0 or y1 <= y0:
        return out, None
    m[:, 2] -= (x0, y0)
    src = face if k >= 0.5 else cv2.resize(face, (max(1, round(n * k * 1.5)),) * 2, interpolation=cv2.INTER_AREA)
    if src is not face:
        s2 = src.shape[0] / n
        m[:, :2] /= s2
        m[:, 2] += 0.5 * (1 / s2 - 1) * k  # keep pixel centres: composed scale about the same origin
    alpha_src = _face_alpha(src.shape[0])
    size = (x1 - x0, y1 - y0)
    sp = cv2.warpAffine(src.astype(np.float32), m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    a = cv2.warpAffine(alpha_src, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)[:, :, None]
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(a * sp + (1 - a) * region + 0.5, 0, 255).astype(np.uint8)
    bx0, by0 = max(0, cx - side / 2), max(0, cy - side / 2)
    return out, (int(bx0), int(by0), int(min(w, cx + side / 2)), int(min(h, cy + side / 2)))


def make_clip(
    path: Path,
    face: np.ndarray | None,
    *,
    size: tuple[int, int] = (640, 360),
    fps: int = 25,
    frames: int = 250,
    motion: str = "move",  # move | static
    face_side: tuple[float, float] = (0.33, 0.5),  # min, max face side as a fraction of the frame height
    no_face: Sequence[tuple[int, int]] = (),  # frame ranges [a, b) with no face
    audio_hz: float | None = 440.0,
    audio_codec: str = "aac",
    audio_rate: int = 48000,
    codec: str = "libx264",
    preset: str = "ultrafast",
    pts: Sequence[int] | None = None,  # explicit video pts (VFR), in ``time_base`` units
    time_base: Fraction | None = None,
    rotation: int = 0,
    subtitles: Sequence[tuple[float, float, str]] = (),  # (start s, duration s, text): a SubRip stream (mkv)
    seed: int = 0,
) -> ClipInfo:
    """Write a clip with PyAV and return what was written (pts, face boxes, audio packet count)."""
    import av

    w, h = size
    path = Path(path)
    bg = _background(w, h, seed)
    rate = Fraction(fps, 1)
    tb = time_base or Fraction(1, fps * 512)
    if pts is None:
        step = int(round(1 / (rate * tb)))
        pts = [i * step for i in range(frames)]
    pts = list(pts)[:frames]
    info = ClipInfo(path=path, frames=len(pts), fps=rate, size=size, pts=pts, time_base=tb)
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=rate, options={"preset": preset} if codec.startswith("libx") else {})
        vs.width, vs.height = (h, w) if rotation % 180 else (w, h)
        vs.pix_fmt = "yuv420p"
        vs.time_base = tb
        vs.codec_context.time_base = tb
        if rotation:
            vs.set_display_rotation(rotation)
        astream = None
        if audio_hz is not None:
            opts = {"strict": "experimental"} if audio_codec in ("vorbis", "opus") else {}
            layout = "stereo" if audio_codec == "vorbis" else "mono"  # FFmpeg's own Vorbis encoder needs 2 channels
            astream = out.add_stream(audio_codec, rate=audio_rate, layout=layout, options=opts)
        sstream = out.add_mux_stream("subrip") if subtitles else None  # packets written as they are
        if sstream is not None:
            sstream.time_base = Fraction(1, 1000)
            for start_s, dur_s, text in subtitles:
                pkt = av.Packet(text.encode("utf-8"))
                pkt.stream = sstream
                pkt.time_base = Fraction(1, 1000)
                pkt.pts = pkt.dts = int(round(start_s * 1000))
                pkt.duration = int(round(dur_s * 1000))
                out.mux(pkt)
        t_total = (pts[-1] * tb + 1 / rate) if pts else 0
        n_samples = int(round(float(t_total) * audio_rate))
        a_pos = 0
        frame_size = 1024
        for i, p in enumerate(pts):
            t = float(p * tb)
            dur = float(t_total)
            has_face = face is not None and not any(a <= i < b for a, b in no_face)
            if motion == "static":
                cx, cy, frac = w / 2, h / 2, (face_side[0] + face_side[1]) / 2
            else:
                u = t / max(dur, 1e-6)
                cx = w * (0.3 + 0.4 * (0.5 - 0.5 * math.cos(2 * math.pi * u)))
                cy = h * (0.5 + 0.08 * math.sin(4 * math.pi * u))
                frac = face_side[0] + (face_side[1] - face_side[0]) * (0.5 - 0.5 * math.cos(2 * math.pi * u * 1.5))
            img, box = render_frame(bg, face if has_face else None, cx, cy, frac * h)
            info.face_boxes.append(box)
            if rotation:
                img = np.ascontiguousarray(np.rot90(img, k=-rotation // 90))
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            vf.pts = p
            vf.time_base = tb
            for pkt in vs.encode(vf):
                out.mux(pkt)
            # Audio up to this frame's time, so the file is interleaved as a camera would write it.
            while astream is not None and a_pos < n_samples and a_pos < (t + 1.0 / fps) * audio_rate:
                n = min(frame_size, n_samples - a_pos)
                tt = (a_pos + np.arange(n)) / audio_rate
                fmt = astream.codec_context.format.name
                nch = astream.codec_context.layout.nb_channels
                samples = np.repeat((0.3 * np.sin(2 * np.pi * audio_hz * tt))[None, :], nch, axis=0)
                if not fmt.endswith("p"):  # packed: interleaved channels in one row
                    samples = samples.T.reshape(1, -1)
                if fmt.startswith("s16"):
                    samples = np.rint(samples * 32767).astype(np.int16)
                elif fmt.startswith("s32"):
                    samples = np.rint(samples * 2147483647).astype(np.int32)
                else:
                    samples = samples.astype(np.float32)
                af = av.AudioFrame.from_ndarray(samples, format=fmt, layout=astream.codec_context.layout.name)
                af.sample_rate = audio_rate
                af.pts = a_pos
                af.time_base = Fraction(1, audio_rate)
                for pkt in astream.encode(af):
                    out.mux(pkt)
                    info.audio_packets += 1
                a_pos += n
        for pkt in vs.encode(None):
            out.mux(pkt)
        if astream is not None:
            for pkt in astream.encode(None):
                out.mux(pkt)
                info.audio_packets += 1
    return info


def load_face(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read face picture {path}")
    return img


if __name__ == "__main__":  # python -m facerest_cli.video.synth FACE.png OUT.mp4 [WIDTHxHEIGHT] [FRAMES]
    import sys

    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit("usage: python -m facerest_cli.video.synth FACE.png OUT.mp4 [WIDTHxHEIGHT] [FRAMES]")
    wh = tuple(int(v) for v in (args[2] if len(args) > 2 else "1280x720").lower().split("x"))
    n = int(args[3]) if len(args) > 3 else 250
    made = make_clip(Path(args[1]), load_face(Path(args[0])), size=(wh[0], wh[1]), frames=n)
    print(f"{made.path}: {made.frames} frames {wh[0]}x{wh[1]} at {made.fps} fps, {made.audio_packets} AAC packets")

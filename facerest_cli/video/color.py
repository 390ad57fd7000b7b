"""YUV <-> BGR conversions that do not drift.

swscale's default RGB <-> YUV paths (what ``VideoFrame.to_ndarray(format="bgr24")`` uses) truncate instead of
rounding: one decode + encode round trip darkens a picture by about 2 levels on average, and every generation
adds as much (measured: -2.1 mean after one round trip, -9.7 after five). For a restoration tool that rewrites
every frame of a film, that is a visible loss outside the faces. So:

* 8-bit 4:2:0 BT.601 limited-range frames (and untagged ones, which FFmpeg treats as such) go through OpenCV's
  I420 conversions, which round correctly and are fast (about 3 ms per 1080p frame each way);
* everything else (BT.709, full range, 10-bit, 4:2:2/4:4:4, odd sizes) goes through swscale with
  ``SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT | SWS_FULL_CHR_H_INP`` (bias below 0.1 level per round trip).

The same colour matrix and range are used both ways and tagged on the output, so untouched pixels come back
within rounding of the source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# libswscale flags (swscale.h); PyAV passes an integer ``interpolation`` through as the flags.
SWS_BILINEAR = 0x2
SWS_FULL_CHR_H_INT = 0x2000
SWS_FULL_CHR_H_INP = 0x4000
SWS_ACCURATE_RND = 0x40000
ACCURATE = SWS_BILINEAR | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT | SWS_FULL_CHR_H_INP

# AVColorSpace values that mean BT.601 (or nothing, which FFmpeg converts as BT.601).
_BT601 = {2, 5, 6}  # unspecified, bt470bg, smpte170m
_JPEG_RANGE = 2  # AVCOL_RANGE_JPEG (full range)


@dataclass(frozen=True)
class ColorTags:
    """The source's colour description, reused for the conversions both ways and tagged on the output."""

    colorspace: int = 2  # AVColorSpace; 2 = unspecified
    color_range: int = 0  # AVColorRange; 0 = unspecified (limited), 1 = MPEG (limited), 2 = JPEG (full)
    color_primaries: int = 2
    color_trc: int = 2

    @classmethod
    def of(cls, frame) -> "ColorTags":
        return cls(int(frame.colorspace), int(frame.color_range), _int(getattr(frame, "color_primaries", 2)),
                   _int(getattr(frame, "color_trc", 2)))

    @property
    def opencv_i420(self) -> bool:
        """Whether OpenCV's BT.601 limited-range I420 conversion is the exact matrix for these tags."""
        return self.colorspace in _BT601 and self.color_range != _JPEG_RANGE


def _int(v) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 2


def frame_to_bgr(frame, tags: ColorTags) -> np.ndarray:
    """A decoded ``av.VideoFrame`` -> ``(H, W, 3)`` uint8 BGR."""
    import cv2

    w, h = frame.width, frame.height
    if frame.format.name == "yuv420p" and tags.opencv_i420 and w % 2 == 0 and h % 2 == 0:
        i420 = frame.to_ndarray()  # (H * 3 / 2, W): Y, then U, then V
        return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)
    kw: dict = {"interpolation": ACCURATE}
    if tags.color_range:
        kw["src_color_range"] = tags.color_range
    if tags.colorspace != 2:
        kw["src_colorspace"] = tags.colorspace
    return frame.reformat(format="bgr24", **kw).to_ndarray()


def bgr_to_frame(bgr: np.ndarray, pix_fmt: str, tags: ColorTags):
    """``(H, W, 3)`` uint8 BGR -> an ``av.VideoFrame`` in the encoder's ``pix_fmt`` (colour tags set)."""
    import av
    import cv2

    h, w = bgr.shape[:2]
    if pix_fmt == "yuv420p" and tags.opencv_i420 and w % 2 == 0 and h % 2 == 0:
        vf = av.VideoFrame.from_ndarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
    else:
        src = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
        if pix_fmt in ("bgr24", "bgr0", "gbrp", "rgb24"):
            vf = src if pix_fmt == "bgr24" else src.reformat(format=pix_fmt)
        else:
            kw: dict = {"interpolation": ACCURATE}
            if tags.color_range:
                kw["dst_color_range"] = tags.color_range
            if tags.colorspace != 2:
                kw["dst_colorspace"] = tags.colorspace
            vf = src.reformat(format=pix_fmt, **kw)
    if pix_fmt not in ("bgr24", "bgr0", "gbrp", "rgb24"):
        try:
            vf.colorspace = tags.colorspace
            vf.color_range = tags.color_range
        except (AttributeError, ValueError):
            pass
    return vf

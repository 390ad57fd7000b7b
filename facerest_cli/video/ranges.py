"""``--start`` / ``--end``: a time (``90``, ``1:30``, ``0:01:30.5``, ``12.5s``) or a frame number (``250f``).

Times are seconds from the first frame of the video; frames are 0-based indices counted from the first frame.
The range is half-open: ``--start`` is the first frame kept, ``--end`` the first frame dropped.
Pure Python (imported by ``facerest_cli.config`` to validate options).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from facerest_cli.errors import UsageError

_FRAME = re.compile(r"^(?:f(\d+)|(\d+)f)$")
_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)$")


@dataclass(frozen=True)
class Position:
    seconds: float | None = None
    frame: int | None = None

    def __str__(self) -> str:
        return f"frame {self.frame}" if self.frame is not None else f"{self.seconds:g}s"


def parse_position(text: str | None, option: str = "--start") -> Position | None:
    if text is None:
        return None
    t = str(text).strip().lower()
    if not t:
        return None
    m = _FRAME.match(t)
    if m:
        return Position(frame=int(m.group(1) or m.group(2)))
    m = _CLOCK.match(t)
    if m:
        h, mi, s = int(m.group(1) or 0), int(m.group(2)), float(m.group(3))
        if mi >= 60 and m.group(1) is not None or s >= 60:
            raise UsageError(f"{option}: {text!r} is not a valid [h:]m:s time")
        return Position(seconds=h * 3600 + mi * 60 + s)
    try:
        sec = float(t[:-1] if t.endswith("s") else t)
    except ValueError:
        raise UsageError(
            f"{option} must be a time in seconds or [h:]m:s (e.g. 90, 1:30) or a frame number like 250f; got {text!r}"
        ) from None
    if not math.isfinite(sec) or sec < 0:
        raise UsageError(f"{option} must be >= 0; got {text!r}")
    return Position(seconds=sec)


@dataclass(frozen=True)
class FrameRange:
    start: Position | None = None
    end: Position | None = None

    @property
    def is_full(self) -> bool:
        return self.start is None and self.end is None

    def describe(self) -> str:
        return f"{self.start or 'start'} .. {self.end or 'end'}"


def parse_range(start: str | None, end: str | None) -> FrameRange:
    s, e = parse_position(start, "--start"), parse_position(end, "--end")
    if s is not None and e is not None:
        if s.frame is not None and e.frame is not None and e.frame <= s.frame:
            raise UsageError(f"--end ({end}) must come after --start ({start})")
        if s.seconds is not None and e.seconds is not None and e.seconds <= s.seconds:
            raise UsageError(f"--end ({end}) must come after --start ({start})")
    if s is not None and s.frame == 0:
        s = None
    if s is not None and s.seconds == 0:
        s = None
    return FrameRange(s, e)

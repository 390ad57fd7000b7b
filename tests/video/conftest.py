"""Video test helpers: clips are generated at run time with PyAV from ../shared pictures (no binary fixtures)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_file

FACE = ("images", "gfpgan", "cropped_faces", "Julia_Roberts_crop.png")


@pytest.fixture(scope="session")
def face() -> np.ndarray:
    from facerest_cli.video.synth import load_face

    return load_face(shared_file(*FACE))


def fast(**kw):
    """run_images options that keep video tests quick: feather masks, no identity report, no 3D prior, x264
    ultrafast."""
    from facerest_cli.config import IdentityConfig, PriorConfig, VideoConfig

    video = {k: kw.pop(k) for k in ("codec", "crf", "preset", "smooth", "start", "end") if k in kw}
    video.setdefault("preset", "ultrafast")
    opts = {"restorer_name": "none", "mask": "feather", "identity": IdentityConfig(recognizer=kw.pop("recognizer", "none")),
            "prior": PriorConfig(prior="off"), "video": VideoConfig(**video)}
    opts.update(kw)
    return opts


def video_frames(path: Path) -> list[tuple[int, float]]:
    """(pts, seconds) of every decoded frame of the main video stream, in presentation order."""
    import av

    with av.open(str(path)) as c:
        return [(f.pts, float(f.time)) for f in c.decode(c.streams.video[0])]


def stream_packets(path: Path, kind: str) -> list[bytes]:
    """The payload of every packet of the first stream of ``kind`` (audio, subtitle), in file order."""
    import av

    with av.open(str(path)) as c:
        streams = getattr(c.streams, {"audio": "audio", "subtitle": "subtitles"}[kind])
        if not streams:
            return []
        return [bytes(p) for p in c.demux(streams[0]) if p.size]


def describe(path: Path) -> dict:
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return {
            "codec": v.codec_context.name,
            "width": v.codec_context.width,
            "height": v.codec_context.height,
            "rate": Fraction(v.average_rate) if v.average_rate else None,
            "duration": c.duration / 1e6 if c.duration else None,
            "streams": [(s.type, s.codec_context.name if s.codec_context is not None else None) for s in c.streams],
            "pix_fmt": v.codec_context.pix_fmt,
        }

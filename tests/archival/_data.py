"""Test data for the archival tests, generated from ../shared photos (no binary fixtures in the repo)."""

from __future__ import annotations

import ctypes
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import REPO, WEIGHTS, shared_file

TEMP_GLOB = ".facerest-*.tmp"
# Fast and deterministic: passthrough restorer, no identity report, no 3D prior (they are tested elsewhere).
RUN_ARGS = ("--restorer", "none", "--recognizer", "none", "--prior", "off", "--quiet")


def fast_options() -> dict:
    """``run_images`` keyword arguments matching RUN_ARGS."""
    from facerest_cli.config import IdentityConfig, PriorConfig

    return {"restorer_name": "none", "identity": IdentityConfig(recognizer="none"), "prior": PriorConfig(prior="off")}


def small_photo(max_side: int = 320, name: str = "insightface/t1.jpg") -> Image.Image:
    im = Image.open(shared_file("images", *name.split("/"))).convert("RGB")
    im.thumbnail((max_side, max_side))
    return im


def jpeg_bytes(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG header declaring a huge RGB image (the data would inflate to width*height*3 bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + png_chunk(b"IEND", b"")


def forty_images(d: Path, n: int = 40, side: int = 200) -> list[Path]:
    """``n`` small JPEGs of real faces (deepface photos, one face each, cycled)."""
    d.mkdir(parents=True, exist_ok=True)
    srcs = sorted(shared_file("images", "deepface").glob("img*.jpg"))
    assert len(srcs) >= 20, "expected the deepface photos in ../shared/images/deepface"
    out = []
    for i in range(n):
        im = Image.open(srcs[i % len(srcs)]).convert("RGB")
        im.thumbnail((side, side))
        p = d / f"img{i:02d}.jpg"
        im.save(p, quality=90)
        out.append(p)
    return out


def _drop_dac_caps() -> None:
    """preexec_fn: remove CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so that even root is
    refused a mode-000 file in the child (root otherwise reads anything)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def unreadable_preexec():
    """The preexec_fn under which a chmod-000 file cannot be read: none for a normal user, capability drop for
    root (None if that is impossible here)."""
    if os.geteuid() != 0:
        return None
    try:
        subprocess.run(["true"], preexec_fn=_drop_dac_caps, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return _drop_dac_caps


def cli_env(extra: dict | None = None) -> dict:
    e = dict(os.environ)
    e.setdefault("FACEREST_WEIGHTS_DIR", str(WEIGHTS))
    e["PYTHONUNBUFFERED"] = "1"
    if extra:
        e.update(extra)
    return e


def cli_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "facerest_cli", *map(str, args)]


def run_cli_pre(*args, preexec=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``run_cli`` with an optional preexec_fn (capability drop for the unreadable-file case)."""
    return subprocess.run(cli_cmd(*args), capture_output=True, text=True, env=cli_env(), timeout=timeout,
                          cwd=str(REPO), preexec_fn=preexec)


def temp_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(TEMP_GLOB))


def jsonl_lines(path: Path) -> list[dict]:
    """Every line of a JSONL file; fails on a torn or unparsable line."""
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), f"{path} ends with a torn line"
    return [json.loads(line) for line in raw.decode("utf-8").splitlines()]


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def outputs_bytes(out: Path, exts=(".jpg", ".png", ".tif", ".webp")) -> dict[str, bytes]:
    """Relative path -> bytes of every image output under ``out`` (crops and report thumbnails excluded)."""
    res = {}
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out)
        if p.is_file() and p.suffix.lower() in exts and rel.parts[0] not in ("faces", "report_thumbs"):
            res[rel.as_posix()] = p.read_bytes()
    return res


def decodes_fully(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001
        return False


def gray16(im: Image.Image) -> np.ndarray:
    g = np.asarray(im.convert("L")).astype(np.uint16)
    rng = np.random.default_rng(3)
    return (g * 257 + rng.integers(0, 200, g.shape)).astype(np.uint16)

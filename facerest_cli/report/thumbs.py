"""Contact-sheet thumbnails: the input crop and the restored crop of each face, as small JPEG files.

Written by the identity stage when a face's result is final (after any guard retries), into
``OUT/report_thumbs/``, next to ``report.html``; the report line keeps their paths (``identity.thumbs``, relative
to OUT), so ``facerest report OUT`` rebuilds the sheet from ``report.jsonl`` alone. Files, not base64 in the
HTML: the page stays small with 10,000 faces and the browser loads only the thumbnails on screen.
"""

from __future__ import annotations

import hashlib
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from facerest_cli.errors import FacerestError
from facerest_cli.io.sinks import atomic_write_bytes
from facerest_cli.pixels import from_float, to_uint8

THUMB_DIR = "report_thumbs"
THUMB_SIZE = 128
JPEG_QUALITY = 85
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def thumb_stem(source: str, face_index: int, frame: int | None = None) -> str:
    """A readable, collision-free file stem: input stem, a hash of the full source path (two inputs may share
    a name in different folders), frame for video, face index."""
    p = Path(source)
    digest = hashlib.sha1(str(source).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    stem = _UNSAFE.sub("_", p.stem)[:48] or "input"
    fpart = f"_f{frame:06d}" if frame is not None else ""
    return f"{stem}_{digest}{fpart}_face{face_index:02d}"


def _to_uint8(crop: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float [0, 1] crop -> uint8."""
    if crop.dtype.kind == "f":
        return from_float(crop, np.uint8)
    return to_uint8(crop)


def thumbnail(crop: np.ndarray, size: int = THUMB_SIZE) -> bytes:
    """``(S, S, 3)`` BGR crop (uint8, uint16 or float [0, 1]) -> JPEG bytes of a ``size`` x ``size`` thumbnail."""
    import cv2

    img = _to_uint8(crop)
    if img.shape[0] != size or img.shape[1] != size:
        interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_CUBIC
        img = cv2.resize(img, (size, size), interpolation=interp)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise FacerestError("could not encode a thumbnail")
    return buf.tobytes()


class ThumbWriter:
    """Writes the two thumbnails of each face in a background thread, so the restore loop never waits on the
    disk (each file is written atomically: temp file, fsync, rename). ``close`` waits for every write and
    raises the first error (a full disk stops the run like any other output)."""

    def __init__(self, out_dir: Path, size: int = THUMB_SIZE, max_pending: int = 256):
        self.out_dir = Path(out_dir)
        self.size = size
        self._pool: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(max_pending)  # bounds memory if the disk is slower than the GPU
        self._lock = threading.Lock()
        self._error: BaseException | None = None

    def write(self, stem: str, input_crop: np.ndarray, restored_crop: np.ndarray) -> dict[str, str]:
        """Queue the face's thumbnails; returns their paths relative to ``out_dir`` at once."""
        rel = {"input": f"{THUMB_DIR}/{stem}_in.jpg", "restored": f"{THUMB_DIR}/{stem}_out.jpg"}
        small = (_shrink(input_crop, self.size), _shrink(restored_crop, self.size))  # queue 48 KB, not 3 MB
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facerest-thumbs")
        self._slots.acquire()
        self._pool.submit(self._write, rel, small)
        return rel

    def _write(self, rel: dict[str, str], small: tuple[np.ndarray, np.ndarray]) -> None:
        try:
            if self._error is None:
                for key, img in zip(("input", "restored"), small):
                    atomic_write_bytes(self.out_dir / rel[key], thumbnail(img, self.size))
        except BaseException as e:  # noqa: BLE001 - handed to the main thread by close()
            with self._lock:
                self._error = self._error or e
        finally:
            self._slots.release()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err


def _shrink(crop: np.ndarray, size: int) -> np.ndarray:
    import cv2

    img = _to_uint8(crop)
    if img.shape[0] > size:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img

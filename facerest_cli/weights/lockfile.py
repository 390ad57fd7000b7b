"""``weights.lock``: hashes pinned on first use or by the user, and the inter-process file lock.

Entries of ``weights.toml`` whose true sha256 is unknown (``sha256 = ""``) are trusted on first use: the first
verified download (or import) records its hash here, and every later use must match it. ``facerest weights import
FILE --as NAME --trust`` records a user-pinned hash the same way, for converted checkpoints whose bytes differ from
the official release. The file is JSON, rewritten atomically under an exclusive lock so that concurrent runs never
lose or tear an entry.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Literal

from facerest_cli.errors import WeightsError

PinKind = Literal["first-use", "user"]
_VERSION = 1


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if needed) for the ``with`` body.

    ``flock`` locks belong to the open file description, so two processes -- or two threads that each open the
    file -- exclude each other, and the kernel drops the lock if the holder dies: a killed download never leaves
    a stale lock behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock_fd(fd)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


try:
    import fcntl

    def _lock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _lock_fd(fd: int) -> None:
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:  # LK_LOCK gives up after ~10 s; a long download can hold it longer
                continue


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class Pin:
    """A hash recorded in ``weights.lock`` for one file of one entry."""

    sha256: str
    size: int
    kind: PinKind
    source: str = ""  # the URL or path the pinned bytes came from
    pinned_at: str = ""  # ISO-8601 UTC


class LockFile:
    """``home/weights.lock``: ``{"version": 1, "files": {"<entry>/<file>": Pin}}``.

    Every read goes to disk (the file is small), so pins written by another process are seen at once.
    """

    def __init__(self, path: Path):
        self.path = path
        self._mutex = path.with_name(path.name + ".flock")

    @staticmethod
    def key(entry: str, file: str) -> str:
        return f"{entry}/{file}"

    def _read(self) -> dict[str, Pin]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise WeightsError(f"{self.path}: cannot read the lock file ({e})") from None
        try:
            data = json.loads(text)
            files = data["files"]
            return {k: Pin(**v) for k, v in files.items()}
        except (ValueError, KeyError, TypeError) as e:
            # Pinned hashes are a security boundary: a damaged lock file is never silently ignored.
            raise WeightsError(
                f"{self.path} is damaged ({type(e).__name__}: {e}); fix it or delete it to re-pin on next use"
            ) from None

    def _write(self, pins: dict[str, Pin]) -> None:
        data = {"version": _VERSION, "files": {k: asdict(p) for k, p in sorted(pins.items())}}
        atomic_write_text(self.path, json.dumps(data, indent=2) + "\n")

    def all(self) -> dict[str, Pin]:
        return self._read()

    def get(self, entry: str, file: str) -> Pin | None:
        return self._read().get(self.key(entry, file))

    def pin(self, entry: str, file: str, sha256: str, size: int, kind: PinKind, source: str = "") -> Pin:
        pin = Pin(
            sha256=sha256,
            size=size,
            kind=kind,
            source=source,
            pinned_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        with file_lock(self._mutex):
            pins = self._read()
            pins[self.key(entry, file)] = pin
            self._write(pins)
        return pin

    def unpin(self, entry: str, file: str) -> bool:
        with file_lock(self._mutex):
            pins = self._read()
            if pins.pop(self.key(entry, file), None) is None:
                return False
            self._write(pins)
        return True

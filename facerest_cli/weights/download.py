"""Verified downloads: mirrors in order, HTTP Range resume, retries with backoff, stall timeout, HTML refusal.

A download streams into ``NAME.part`` beside its destination and is renamed onto ``NAME`` only after its size and
sha256 match, so an interrupted or substituted transfer never leaves a file where a model is expected. A ``.part``
left by a broken connection is the resume point of the next attempt (``Range: bytes=N-``); one whose bytes turn
out wrong is deleted. Proxies come from the environment (``urllib``'s default ``ProxyHandler``). Nothing here
touches the network until ``download`` is called.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from facerest_cli import __version__
from facerest_cli.errors import DownloadError

CHUNK = 1 << 20
_USER_AGENT = f"facerest/{__version__} (+weights manager)"
_RETRY_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True)
class DownloadSettings:
    timeout_s: float = 30.0  # longest wait for a connection or for the next bytes of a transfer
    retries: int = 3  # extra attempts per mirror after a transient failure
    backoff_s: float = 1.0  # sleep before retry k is backoff_s * 2**k
    progress: bool = True  # a Rich bar on stderr (only when stderr is a terminal)


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    size: int
    url: str


class _Transient(Exception):
    """Worth retrying on the same mirror (timeouts, resets, 5xx); the ``.part`` is kept for resuming."""


class _Permanent(Exception):
    """Move on to the next mirror (404, HTML page, wrong bytes)."""


class _BadBytes(_Permanent):
    """The transfer finished but its bytes are wrong; ``resumed`` when it built on an earlier ``.part``."""

    def __init__(self, message: str, resumed: bool):
        super().__init__(message)
        self.resumed = resumed


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def sha256_file(path: Path) -> str:
    """Hex sha256 of the whole file."""
    return _hash_prefix(path, None).hexdigest()


def _hash_prefix(path: Path, limit: int | None) -> "hashlib._Hash":
    """A sha256 object fed with the first ``limit`` bytes of the file (all of it for None), ready to extend."""
    h = hashlib.sha256()
    left = limit
    with open(path, "rb") as f:
        while left is None or left > 0:
            block = f.read(CHUNK if left is None else min(CHUNK, left))
            if not block:
                break
            h.update(block)
            if left is not None:
                left -= len(block)
    return h


def looks_like_html(head: bytes) -> bool:
    """True for the first bytes of an HTML document (Google Drive's confirm page, a login wall, a 200 error)."""
    s = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:16].lower()
    return s.startswith((b"<!doctype", b"<html", b"<head", b"<?xml"))


def download(
    urls: Sequence[str],
    dest: Path,
    *,
    sha256: Sequence[str] = (),
    size: int = 0,
    settings: DownloadSettings = DownloadSettings(),
    label: str | None = None,
) -> Downloaded:
    """Fetch ``dest`` from the first mirror that serves the right bytes; return its hash, size and URL.

    ``sha256`` lists the accepted hashes (empty: any, the caller pins what arrived); ``size`` is the expected size
    (0: unknown). Raises ``DownloadError`` naming every mirror and why it failed.
    """
    if not urls:
        raise DownloadError(f"{dest.name}: no download URL is known")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    accepted = tuple(sha256)
    failures: list[str] = []
    for url in urls:
        restarted = False
        attempt = 0
        while True:
            try:
                got_sha, got_size, resumed = _fetch_once(url, part, size, settings, label or dest.name)
                _check(got_sha, got_size, accepted, size, resumed)
            except _Transient as e:
                if attempt >= settings.retries:
                    failures.append(f"{url}: {e} (gave up after {attempt + 1} attempts)")
                    break
                time.sleep(settings.backoff_s * (2**attempt))
                attempt += 1
                continue
            except _BadBytes as e:
                with contextlib.suppress(OSError):
                    part.unlink()
                if e.resumed and not restarted:
                    # The bytes kept from an earlier attempt may be the bad ones: one fresh full transfer.
                    restarted = True
                    continue
                failures.append(f"{url}: {e}")
                break
            except _Permanent as e:
                failures.append(f"{url}: {e}")
                break
            os.replace(part, dest)
            _fsync_dir(dest.parent)
            return Downloaded(path=dest, sha256=got_sha, size=got_size, url=url)
    raise DownloadError(f"could not download {dest.name}: " + "; ".join(failures))


def _check(got_sha: str, got_size: int, accepted: tuple[str, ...], size: int, resumed: bool) -> None:
    if accepted and got_sha not in accepted:
        want = accepted[0] if len(accepted) == 1 else " or ".join(accepted)
        raise _BadBytes(
            f"sha256 mismatch: expected {want}, got {got_sha} ({got_size} bytes); the file was discarded", resumed
        )
    if size and not accepted and got_size != size:
        raise _BadBytes(f"size mismatch: expected {size} bytes, got {got_size}", resumed)


def _fetch_once(url: str, part: Path, size: int, settings: DownloadSettings, label: str) -> tuple[str, int, bool]:
    """One HTTP transfer into ``part``, resuming it when it holds bytes.

    Returns the sha256 and size of the whole ``part`` and whether bytes kept from an earlier attempt are in it.
    """
    start = part.stat().st_size if part.exists() else 0
    if size and start > size:
        part.unlink()
        start = 0
    if size and start == size:
        # A complete .part from a run killed before the rename: verify it instead of fetching again.
        return sha256_file(part), start, True

    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)
    opener = urllib.request.build_opener()  # ProxyHandler reads http(s)_proxy / no_proxy from the environment
    try:
        response = opener.open(request, timeout=settings.timeout_s)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and start:
            part.unlink()  # our .part does not fit what the server has; start over
            raise _Transient("the server refused to resume (HTTP 416); restarting from the beginning") from None
        if e.code in _RETRY_HTTP:
            raise _Transient(f"HTTP {e.code} {e.reason}") from None
        raise _Permanent(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _Transient(_reason(e.reason, settings)) from None
    except (OSError, http.client.HTTPException) as e:
        raise _Transient(_reason(e, settings)) from None

    with response:
        if response.headers.get_content_type() == "text/html":
            raise _Permanent(_HTML_MESSAGE)
        h = hashlib.sha256()
        if start and response.status == 206:
            m = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != start:
                part.unlink()
                raise _Transient("the server answered the resume request with another range; restarting")
            h = _hash_prefix(part, start)
        elif start:
            start = 0  # the server ignored Range and sends the whole file
        length = response.headers.get("Content-Length")
        expected_body = int(length) if length and length.isdigit() else None
        total = size or ((start + expected_body) if expected_body is not None else None)
        received = start
        with _progress(settings, label, total, start) as advance, open(part, "ab" if start else "wb") as out:
            first = start == 0
            while True:
                try:
                    block = response.read(CHUNK)
                except (TimeoutError, socket.timeout):
                    raise _Transient(f"stalled: no data for {settings.timeout_s:g} s") from None
                except http.client.IncompleteRead:
                    raise _Transient("the connection closed before the end of the file") from None
                except (OSError, http.client.HTTPException) as e:
                    raise _Transient(_reason(e, settings)) from None
                if not block:
                    break
                if first:
                    first = False
                    if looks_like_html(block):
                        out.close()
                        part.unlink()
                        raise _Permanent(_HTML_MESSAGE)
                out.write(block)
                h.update(block)
                received += len(block)
                advance(len(block))
                if size and received > size:
                    out.close()
                    part.unlink()
                    raise _Permanent(f"the server sent more than the expected {size} bytes")
            out.flush()
            os.fsync(out.fileno())
        if expected_body is not None and received - start < expected_body:
            raise _Transient("the connection closed before the end of the file")
    return h.hexdigest(), received, start > 0


_HTML_MESSAGE = (
    "the server sent an HTML page instead of the model (a login wall, a quota page or Google Drive's "
    "'can't scan for viruses' confirmation); download it in a browser and install it with `facerest weights import`"
)


def _reason(e: object, settings: DownloadSettings) -> str:
    if isinstance(e, (TimeoutError, socket.timeout)):
        return f"timed out after {settings.timeout_s:g} s"
    return str(e) or type(e).__name__


def _fsync_dir(path: Path) -> None:
    # The rename is only durable once the directory entry is; not possible on every platform.
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _progress(settings: DownloadSettings, label: str, total: int | None, done: int):
    """Yield ``advance(n)``; draws bytes, rate and ETA on stderr when it is a terminal and progress is on."""
    if not settings.progress or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    with bar:
        task = bar.add_task(label, total=total, completed=done)
        yield lambda n: bar.advance(task, n)

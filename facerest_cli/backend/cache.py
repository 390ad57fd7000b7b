"""The compiled-model cache: converted networks under ``$FACEREST_HOME/compiled/<model>/<backend>-<key>/``.

An entry is a folder holding the converted files (OpenVINO IR: ``model.xml`` + ``model.bin``) and
``manifest.json``: the full key and the sha256 and size of every file. An entry is used only when its manifest
parses, its key equals the key asked for, and every file hashes to its manifest value; anything else (a deleted,
truncated or edited file, a stale key, a half-written folder) is removed and rebuilt, never trusted.

Writes are atomic: the builder writes into a hidden temporary folder next to the entry, the manifest is written
last (temp file + fsync + rename), then the folder is renamed into place. A per-entry lock file keeps two
processes from converting the same network at once: the second waits and then uses the first one's entry.

``CompiledCache.conversions`` counts the builds this object performed (tests read it; nothing global).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from facerest_cli.errors import UsageError

MANIFEST = "manifest.json"
_FORMAT = 1
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_TMP_PREFIX = ".facerest-"  # as facerest_cli.io.sinks.TEMP_PREFIX: hidden, and recognisable as ours


def compiled_root(weights_home: Path) -> Path:
    """``$FACEREST_HOME/compiled`` next to ``$FACEREST_HOME/weights`` (``WeightsConfig.home``)."""
    return Path(weights_home).parent / "compiled"


def key_digest(key: dict) -> str:
    """16 hex digits of the sha256 of the canonical JSON of ``key``."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class EntryInfo:
    """One cache entry as ``facerest cache list`` shows it."""

    model: str
    backend: str
    digest: str
    path: Path
    size: int
    key: dict = field(default_factory=dict)
    created: str = ""
    valid_manifest: bool = True


class CompiledCache:
    """A folder of compiled-model entries. ``conversions``: builds run by this object; ``rebuilt``: entries found
    corrupt or stale and removed (each then converted again); ``events``: one line per such decision."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.conversions = 0
        self.rebuilt = 0
        self.events: list[str] = []

    @classmethod
    def for_weights_home(cls, weights_home: Path) -> "CompiledCache":
        return cls(compiled_root(weights_home))

    # ------------------------------------------------------------------------------------------ lookup / build

    def entry_dir(self, model: str, backend: str, key: dict) -> Path:
        if not _NAME_OK.match(model) or not _NAME_OK.match(backend):
            raise UsageError(f"compiled cache: {model!r}/{backend!r} is not a valid entry name")
        return self.root / model / f"{backend}-{key_digest(key)}"

    def verify(self, entry: Path, key: dict) -> str:
        """``""`` if ``entry`` is complete, current for ``key`` and uncorrupted; else the reason it is not."""
        try:
            manifest = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return "no manifest"
        except (OSError, ValueError) as e:
            return f"unreadable manifest ({type(e).__name__})"
        if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
            return "manifest format differs"
        if manifest.get("key") != json.loads(json.dumps(key)):
            return "stale (its key differs)"
        files = manifest.get("files")
        if not isinstance(files, dict) or not files:
            return "manifest lists no files"
        present = {p.name for p in entry.iterdir() if p.name != MANIFEST}
        if present != set(files):
            return f"files differ from the manifest ({sorted(present ^ set(files))})"
        for name, meta in files.items():
            p = entry / name
            try:
                if p.stat().st_size != meta.get("size"):
                    return f"{name}: size differs"
                if sha256_file(p) != meta.get("sha256"):
                    return f"{name}: sha256 differs"
            except OSError as e:
                return f"{name}: {e.strerror or e}"
        return ""

    def get_or_build(self, model: str, backend: str, key: dict, build: Callable[[Path], None]) -> tuple[Path, bool]:
        """The verified entry for ``key``, building it with ``build(folder)`` if absent, corrupt or stale.

        ``build`` writes the entry's files into ``folder`` (an empty temporary folder). Returns the entry folder
        and whether this call built it.
        """
        entry = self.entry_dir(model, backend, key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        from facerest_cli.weights.lockfile import file_lock

        with file_lock(entry.parent / f".{entry.name}.lock"):
            if entry.exists():
                reason = self.verify(entry, key)
                if not reason:
                    return entry, False
                self.rebuilt += 1
                self.events.append(f"{entry}: {reason}; rebuilt")
                _remove_tree(entry)
            self._build(entry, key, build)
            return entry, True

    def _build(self, entry: Path, key: dict, build: Callable[[Path], None]) -> None:
        from facerest_cli.io.sinks import atomic_write_bytes, fsync_dir

        tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=entry.parent))
        try:
            t0 = time.perf_counter()
            build(tmp)
            seconds = time.perf_counter() - t0
            files = {}
            for p in sorted(tmp.iterdir()):
                if not p.is_file():
                    raise UsageError(f"compiled cache: the builder left a non-file {p.name!r} in {tmp}")
                with open(p, "rb+") as f:  # the converted files are on disk before the manifest vouches for them
                    os.fsync(f.fileno())
                files[p.name] = {"sha256": sha256_file(p), "size": p.stat().st_size}
            manifest = {
                "format": _FORMAT,
                "key": key,
                "files": files,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "build_seconds": round(seconds, 3),
            }
            atomic_write_bytes(tmp / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
            os.replace(tmp, entry)  # entry does not exist here (removed above, under the lock)
            fsync_dir(entry.parent)
        except BaseException:
            _remove_tree(tmp)
            raise
        self.conversions += 1

    # ----------------------------------------------------------------------------------- list / clear / remove

    def entries(self) -> list[EntryInfo]:
        out: list[EntryInfo] = []
        if not self.root.is_dir():
            return out
        for model_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for entry in sorted(p for p in model_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
                backend, _, digest = entry.name.rpartition("-")
                size = sum(p.stat().st_size for p in entry.iterdir() if p.is_file())
                try:
                    manifest = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
                    key, created, ok = manifest.get("key", {}), manifest.get("created", ""), True
                except (OSError, ValueError, AttributeError):
                    key, created, ok = {}, "", False
                out.append(EntryInfo(model_dir.name, backend, digest, entry, size, key, created, ok))
        return out

    def remove_model(self, model: str) -> list[Path]:
        """Delete every entry of ``model`` (``facerest weights remove`` calls this); returns the entries removed."""
        if not _NAME_OK.match(model):
            raise UsageError(f"compiled cache: {model!r} is not a valid model name")
        folder = self.root / model
        if not folder.is_dir():
            return []
        removed = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        _remove_tree(folder)
        return removed

    def clear(self) -> list[Path]:
        """Delete every entry; returns the entries removed. The cache root itself stays."""
        removed = [e.path for e in self.entries()]
        if self.root.is_dir():
            for p in self.root.iterdir():
                _remove_tree(p) if p.is_dir() else p.unlink(missing_ok=True)
        return removed


def _remove_tree(path: Path) -> None:
    """Remove ``path``: first renamed aside (so a reader never sees a half-deleted entry), then deleted."""
    if not path.exists():
        return
    aside = path.with_name(f"{_TMP_PREFIX}trash-{os.getpid()}-{path.name}")
    try:
        os.replace(path, aside)
    except OSError:
        aside = path
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(aside)

"""The weights cache: find, verify, download, import and export the files ``weights.toml`` describes.

A file is used only when its bytes are proven: its sha256 is one the registry accepts, or -- for entries whose
true hash is unknown, and for checkpoints the user chose to trust -- the hash pinned in ``home/weights.lock``.
Search order: the read-only ``extra_dirs`` (``--weights-dir``, then ``FACEREST_WEIGHTS_DIR``; recursive), then
``home/<entry>/<file>``. Hashes are cached in ``home/.verified.json`` by (resolved path, size, mtime_ns), so a
350 MB checkpoint is hashed once, not on every run. Nothing here imports torch or opens a socket unless a
download is asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterable, Literal, Sequence

from facerest_cli.errors import UsageError, WeightsError, WeightsMissingError
from facerest_cli.weights.download import CHUNK, DownloadSettings, download, part_path, sha256_file
from facerest_cli.weights.lockfile import LockFile, atomic_write_text, file_lock
from facerest_cli.weights.registry import Registry, WeightsEntry, WeightsFile, load_registry

State = Literal["missing", "verified", "pinned", "user-pinned", "corrupt"]
USABLE: frozenset[str] = frozenset({"verified", "pinned", "user-pinned"})
_ARCHIVES = "_archives"  # entry names start with [a-z0-9], so this directory never collides with one
_TRUE = ("1", "true", "yes", "on")
_OFFLINE = "downloads are off (--offline or FACEREST_OFFLINE=1)"


@dataclass(frozen=True)
class WeightsConfig:
    """Where weights live and whether they may be downloaded."""

    home: Path  # the cache dir: $FACEREST_HOME/weights, else the platform user cache dir / "facerest" / "weights"
    extra_dirs: tuple[Path, ...] = ()  # read-only dirs searched first: --weights-dir, then FACEREST_WEIGHTS_DIR
    offline: bool = False  # --offline or FACEREST_OFFLINE=1
    timeout_s: float = 30.0  # stall timeout per read
    retries: int = 3
    backoff_s: float = 1.0
    registry_path: Path | None = None  # FACEREST_REGISTRY: another weights.toml (tests, private mirrors)
    model_dir: Path | None = None  # $FACEREST_HOME/models: *.toml fragments adding a user's own models

    @classmethod
    def from_env(cls, weights_dirs: Sequence[Path] = (), offline: bool | None = None) -> "WeightsConfig":
        env = os.environ
        if env.get("FACEREST_HOME"):
            home = Path(env["FACEREST_HOME"]).expanduser() / "weights"
        else:
            import platformdirs

            home = platformdirs.user_cache_path("facerest") / "weights"
        extra = [Path(p).expanduser() for p in weights_dirs]
        extra += [Path(p).expanduser() for p in env.get("FACEREST_WEIGHTS_DIR", "").split(os.pathsep) if p]
        if offline is None:
            offline = env.get("FACEREST_OFFLINE", "").strip().lower() in _TRUE
        return cls(
            home=home,
            extra_dirs=tuple(dict.fromkeys(extra)),
            offline=offline,
            timeout_s=_env_number("FACEREST_DOWNLOAD_TIMEOUT", 30.0, float),
            retries=int(_env_number("FACEREST_DOWNLOAD_RETRIES", 3, int)),
            registry_path=Path(env["FACEREST_REGISTRY"]) if env.get("FACEREST_REGISTRY") else None,
            model_dir=home.parent / "models",
        )


def _env_number(name: str, default: float, kind: type) -> float:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a number") from None
    if value < 0:
        raise UsageError(f"{name}={raw!r} must be >= 0")
    return value


@dataclass(frozen=True)
class FileStatus:
    """What the cache knows about one file of one entry; ``path`` is the file checked (usable or corrupt)."""

    entry: str
    file: str
    state: State
    path: Path | None = None
    sha256: str = ""  # the actual hash of ``path`` when it was hashed
    detail: str = ""

    @property
    def usable(self) -> bool:
        return self.state in USABLE


@dataclass(frozen=True)
class Imported:
    """One outcome of ``import_paths``: ``action`` is installed, already, refused or skipped."""

    source: Path
    action: Literal["installed", "already", "refused", "skipped"]
    entry: str = ""
    file: str = ""
    detail: str = ""


class _HashCache:
    """sha256 by (resolved path, size, mtime_ns) in ``home/.verified.json``; a cache, so losing it is harmless."""

    _MAX = 4096

    def __init__(self, path: Path):
        self.path = path

    @staticmethod
    def _key(p: Path, st: os.stat_result) -> str:
        return f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}
        except (OSError, ValueError, AttributeError):
            return {}

    def sha256(self, p: Path, *, rehash: bool = False) -> str:
        st = p.stat()
        key = self._key(p, st)
        if not rehash:
            hit = self._load().get(key)
            if hit:
                return hit
        digest = sha256_file(p)
        self.record(p, digest, st)
        return digest

    def record(self, p: Path, digest: str, st: os.stat_result | None = None) -> None:
        st = st or p.stat()
        key = self._key(p, st)
        prefix = key.rsplit("|", 2)[0] + "|"
        data = {k: v for k, v in self._load().items() if not k.startswith(prefix)}
        data[key] = digest
        if len(data) > self._MAX:
            data = dict(list(data.items())[-self._MAX :])
        with contextlib.suppress(OSError):  # a read-only cache dir only costs re-hashing
            atomic_write_text(self.path, json.dumps(data, indent=0) + "\n")


def _walk_files(root: Path) -> Iterable[Path]:
    """Files under ``root`` in a stable order, skipping hidden ones and our own partial/lock/temporary files."""
    for here, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in sorted(names):
            if not n.startswith(".") and not n.endswith((".part", ".lock", ".tmp")):
                yield Path(here) / n


def _member_name_ok(member: str) -> bool:
    p = PurePosixPath(member)
    return bool(member) and "\\" not in member and not p.is_absolute() and ".." not in p.parts and ":" not in member


class WeightsStore:
    """Finds, verifies and installs weights files. One instance per run; it holds no global state."""

    def __init__(self, config: WeightsConfig, registry: Registry | None = None):
        self.config = config
        self.registry = registry if registry is not None else load_registry(config.registry_path, config.model_dir)
        self.lock = LockFile(config.home / "weights.lock")
        self._hashes = _HashCache(config.home / ".verified.json")
        self._index: list[tuple[Path, str, int]] | None = None

    # ------------------------------------------------------------------------------------------------ queries

    def home_path(self, entry: str, file: str) -> Path:
        return self.config.home / entry / file

    def locate(self, name: str, file: str | None = None) -> Path | None:
        """The verified local path of the file, or None. Never touches the network."""
        st = self.status(name, file)
        return st.path if st.usable else None

    def state(self, name: str) -> State:
        """The entry's state over all its files: corrupt > missing > user-pinned > pinned > verified."""
        states = {s.state for s in self.file_statuses(name)}
        for s in ("corrupt", "missing", "user-pinned", "pinned"):
            if s in states:
                return s  # type: ignore[return-value]
        return "verified"

    def file_statuses(self, name: str, *, rehash: bool = False) -> list[FileStatus]:
        entry = self.registry.get(name)
        return [self.status(name, f.name, rehash=rehash) for f in entry.files]

    def status(self, name: str, file: str | None = None, *, rehash: bool = False) -> FileStatus:
        entry = self.registry.get(name)
        f = entry.file(file)
        for p in self._extra_candidates(entry, f):
            try:
                digest = self._hashes.sha256(p, rehash=rehash)
            except OSError:
                continue
            judged = self._judge(entry, f, digest)
            if judged:
                return FileStatus(entry.name, f.name, judged, p, digest)
        p = self.home_path(entry.name, f.name)
        if not p.is_file():
            return FileStatus(entry.name, f.name, "missing")
        try:
            digest = self._hashes.sha256(p, rehash=rehash)
        except OSError as e:
            return FileStatus(entry.name, f.name, "corrupt", p, detail=f"unreadable: {e}")
        judged = self._judge(entry, f, digest)
        if judged:
            return FileStatus(entry.name, f.name, judged, p, digest)
        if not f.known_hash and self.lock.get(entry.name, f.name) is None:
            detail = "weights.lock has no pinned hash for it; `facerest weights import` it again to pin it"
        else:
            detail = f"sha256 is {digest}, expected {self._expected_text(entry, f)}"
        return FileStatus(entry.name, f.name, "corrupt", p, digest, detail)

    def _judge(self, entry: WeightsEntry, f: WeightsFile, digest: str) -> State | None:
        if digest in f.accepted_sha256:
            return "verified"
        pin = self.lock.get(entry.name, f.name)
        if pin is not None and pin.sha256 == digest:
            if pin.kind == "user":
                return "user-pinned"
            if not f.known_hash:  # the registry's own hash outranks a first-use pin made before it was known
                return "pinned"
        return None

    def _expected_text(self, entry: WeightsEntry, f: WeightsFile) -> str:
        hashes = list(f.accepted_sha256)
        pin = self.lock.get(entry.name, f.name)
        if pin is not None and (pin.kind == "user" or not f.known_hash):
            hashes.append(f"{pin.sha256} (pinned in weights.lock)")
        return " or ".join(hashes) if hashes else "an unknown hash (pinned on first use)"

    def _sizes(self, entry: WeightsEntry, f: WeightsFile) -> set[int]:
        """Sizes a match may have; empty when any size may match (unknown size, or re-releases of other sizes)."""
        if not f.size or f.alt_sha256:
            return set()
        sizes = {f.size}
        pin = self.lock.get(entry.name, f.name)
        if pin is not None and pin.size:
            sizes.add(pin.size)
        return sizes

    def _extra_index(self) -> list[tuple[Path, str, int]]:
        if self._index is None:
            found: list[tuple[Path, str, int]] = []
            for d in self.config.extra_dirs:
                for p in _walk_files(d) if d.is_dir() else ():
                    with contextlib.suppress(OSError):
                        if p.is_file():
                            found.append((p, p.name, p.stat().st_size))
            self._index = found
        return self._index

    def _extra_candidates(self, entry: WeightsEntry, f: WeightsFile) -> list[Path]:
        """Files in extra_dirs named like ``f`` (or an alias), then -- for known hashes -- files of its size."""
        names = {f.name, *f.aliases}
        sizes = self._sizes(entry, f)
        by_name = [p for p, n, s in self._extra_index() if n in names and (not sizes or s in sizes)]
        by_size = [p for p, n, s in self._extra_index() if n not in names and s in sizes and f.known_hash]
        return by_name + by_size

    # ---------------------------------------------------------------------------------------------- ensuring

    def ensure(self, name: str, file: str | None = None, *, progress: bool = True) -> Path:
        """The verified path of the file, downloading it if needed (never when offline).

        ``requires`` are not followed here; ``ensure_all`` does the entry and its requirements.
        """
        entry = self.registry.get(name)
        f = entry.file(file)
        st = self.status(name, f.name)
        if st.usable:
            assert st.path is not None
            return st.path
        if f.member:
            return self._ensure_member(entry, f, progress)
        if entry.user_import_only or not f.url:
            raise WeightsMissingError(self.missing_message(entry, f, "it cannot be downloaded automatically"))
        if self.config.offline:
            raise WeightsMissingError(self.missing_message(entry, f, _OFFLINE))
        dest = self.home_path(entry.name, f.name)
        with file_lock(dest.with_name(dest.name + ".lock")):
            # Another process may have installed it while this one waited for the lock.
            st = self.status(name, f.name)
            if st.usable:
                assert st.path is not None
                return st.path
            pin = self.lock.get(entry.name, f.name)
            accepted = f.accepted_sha256 or ((pin.sha256,) if pin is not None else ())
            got = download(
                f.url,
                dest,
                sha256=accepted,
                size=f.size if not f.alt_sha256 else 0,
                settings=self._settings(progress),
                label=f"{entry.name}: {f.name}",
            )
            self._hashes.record(dest, got.sha256)
            if not accepted:
                self.lock.pin(entry.name, f.name, got.sha256, got.size, "first-use", got.url)
        return dest

    def ensure_all(self, name: str, *, progress: bool = True) -> dict[str, Path]:
        """Every file of the entry and of everything it requires, as ``{"<entry>/<file>": path}``."""
        out: dict[str, Path] = {}
        for entry in self.closure(name):
            for f in entry.files:
                out[f"{entry.name}/{f.name}"] = self.ensure(entry.name, f.name, progress=progress)
        return out

    def closure(self, name: str) -> list[WeightsEntry]:
        """The entry followed by what it requires, depth first, each once."""
        seen: dict[str, WeightsEntry] = {}

        def visit(n: str) -> None:
            if n in seen:
                return
            e = self.registry.get(n)
            seen[n] = e
            for r in e.requires:
                visit(r)

        visit(name)
        return list(seen.values())

    def _settings(self, progress: bool) -> DownloadSettings:
        c = self.config
        return DownloadSettings(timeout_s=c.timeout_s, retries=c.retries, backoff_s=c.backoff_s, progress=progress)

    def missing_message(self, entry: WeightsEntry, f: WeightsFile, why: str) -> str:
        """One line: the model, the file expected, where to get it, its hash, and the import command."""
        what = f"{f.name} (inside {f.archive_name})" if f.member else f.name
        get = f.archive_name if f.member else f.name
        sha = f.archive_sha256 if f.member else f.sha256
        parts = [f"model {entry.name!r} ({entry.role}) needs {what}, which is not installed", why]
        if f.url:
            parts.append("download it from " + " or ".join(f.url))
        elif entry.notes:
            parts.append(entry.notes.rstrip("."))
        if sha:
            size = f.archive_size if f.member else f.size
            parts.append(f"sha256 {sha}" + (f", {size} bytes" if size else ""))
        else:
            parts.append("sha256 unknown upstream (it is pinned when imported)")
        same_name = [
            e.name for e in self.registry for g in e.files if g.name == f.name and not g.member and e.name != entry.name
        ]
        command = f"facerest weights import {get}"
        if same_name and not f.member:
            command += f" --as {entry.name}"
        parts.append(f"then run: {command}")
        return "; ".join(parts)

    def _ensure_member(self, entry: WeightsEntry, f: WeightsFile, progress: bool) -> Path:
        assert f.member and f.archive_name
        archive_dest = self.config.home / _ARCHIVES / f.archive_name
        with file_lock(archive_dest.with_name(archive_dest.name + ".lock")):
            st = self.status(entry.name, f.name)
            if st.usable:
                assert st.path is not None
                return st.path
            local = self._find_local_archive(f)
            downloaded = False
            archive_sha = self._hashes.sha256(local) if local is not None else ""
            if local is None:
                if entry.user_import_only or not f.url:
                    raise WeightsMissingError(self.missing_message(entry, f, "it cannot be downloaded automatically"))
                if self.config.offline:
                    raise WeightsMissingError(self.missing_message(entry, f, _OFFLINE))
                got = download(
                    f.url,
                    archive_dest,
                    sha256=(f.archive_sha256,) if f.archive_sha256 else (),
                    size=f.archive_size,
                    settings=self._settings(progress),
                    label=f"{entry.name}: {f.archive_name}",
                )
                local, downloaded, archive_sha = got.path, True, got.sha256
            try:
                problems = self._extract_members(local, archive_sha, source=str(local))
            finally:
                if downloaded:
                    # The members are what we keep; the archive (288 MB for buffalo_l) is not needed again.
                    with contextlib.suppress(OSError):
                        local.unlink()
        st = self.status(entry.name, f.name)
        if st.usable:
            assert st.path is not None
            return st.path
        raise WeightsError(f"{entry.name}: {f.member} from {f.archive_name}: " + ("; ".join(problems) or st.detail))

    def _archive_files(self, archive_name: str, archive_sha: str) -> list[tuple[WeightsEntry, WeightsFile]]:
        return [
            (e, g)
            for e in self.registry
            for g in e.files
            if g.member and (g.archive_name == archive_name or (g.archive_sha256 and g.archive_sha256 == archive_sha))
        ]

    def _find_local_archive(self, f: WeightsFile) -> Path | None:
        for p, n, s in self._extra_index():
            if n == f.archive_name and (not f.archive_size or s == f.archive_size):
                if not f.archive_sha256 or self._hashes.sha256(p) == f.archive_sha256:
                    return p
        return None

    def _extract_members(self, archive: Path, archive_sha: str, source: str) -> list[str]:
        """Install every registry member of ``archive`` that is not installed yet; return the problems met.

        Only the members the registry names are read, each into a temporary file inside ``home/<entry>/``, and
        renamed onto ``home/<entry>/<file>`` after verification: nothing else in the zip is ever written, and no
        name taken from the zip is used as a path.
        """
        problems: list[str] = []
        wanted = self._archive_files(archive.name, archive_sha)
        try:
            zf = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError) as e:
            return [f"{archive}: not a readable zip archive ({e})"]
        with zf:
            for entry, g in wanted:
                assert g.member
                if g.archive_sha256 and archive_sha != g.archive_sha256:
                    problems.append(f"{archive.name}: sha256 {archive_sha}, expected {g.archive_sha256}")
                    continue
                if self.status(entry.name, g.name).usable:
                    continue
                if not _member_name_ok(g.member):
                    problems.append(f"{g.member!r}: refused, a member name must be a relative path without '..'")
                    continue
                try:
                    info = zf.getinfo(g.member)
                except KeyError:
                    problems.append(f"{archive.name} has no member {g.member!r}")
                    continue
                if g.size and info.file_size != g.size and not g.alt_sha256:
                    problems.append(f"{g.member}: {info.file_size} bytes in the archive, expected {g.size}")
                    continue
                try:
                    with zf.open(info) as src:
                        self._install_stream(entry, g, src, info.file_size, f"{source}:{g.member}")
                except (WeightsError, zipfile.BadZipFile, OSError) as e:
                    problems.append(str(e))
        return problems

    # ---------------------------------------------------------------------------------------------- install

    def _install_stream(self, entry: WeightsEntry, f: WeightsFile, src: BinaryIO, limit: int, source: str) -> Path:
        """Copy ``src`` into ``home/<entry>/<file>`` via a temporary file; install only verified bytes."""
        dest = self.home_path(entry.name, f.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(dest.with_name(dest.name + ".lock")):
            fd, tmp_name = tempfile.mkstemp(prefix=f".{f.name}.", suffix=".tmp", dir=dest.parent)
            tmp = Path(tmp_name)
            try:
                h = hashlib.sha256()
                n = 0
                with os.fdopen(fd, "wb") as out:
                    while True:
                        block = src.read(CHUNK)
                        if not block:
                            break
                        n += len(block)
                        if limit and n > limit:
                            raise WeightsError(f"{source}: more bytes than the {limit} announced")
                        h.update(block)
                        out.write(block)
                    out.flush()
                    os.fsync(out.fileno())
                digest = h.hexdigest()
                judged = self._judge(entry, f, digest)
                pin = self.lock.get(entry.name, f.name)
                if judged is None and not f.known_hash and pin is None:
                    self.lock.pin(entry.name, f.name, digest, n, "first-use", source)
                elif judged is None:
                    raise WeightsError(
                        f"{source}: sha256 mismatch for {entry.name}/{f.name}: expected "
                        f"{self._expected_text(entry, f)}, got {digest}"
                    )
                os.replace(tmp, dest)
                self._hashes.record(dest, digest)
                return dest
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def _install_file(self, entry: WeightsEntry, f: WeightsFile, src: Path) -> Imported:
        dest = self.home_path(entry.name, f.name)
        with contextlib.suppress(OSError):
            if dest.exists() and dest.resolve() == src.resolve():
                return Imported(src, "already", entry.name, f.name, "it is the installed file")
        st = self.status(entry.name, f.name)
        if st.usable and st.path is not None and st.path.parent.parent == self.config.home:
            src_sha = self._hashes.sha256(src)
            if src_sha == st.sha256:
                return Imported(src, "already", entry.name, f.name, f"already installed at {st.path}")
        with open(src, "rb") as fh:
            path = self._install_stream(entry, f, fh, 0, str(src))
        return Imported(src, "installed", entry.name, f.name, str(path))

    # ----------------------------------------------------------------------------------------------- import

    def import_paths(
        self,
        paths: Sequence[Path],
        *,
        as_name: str | None = None,
        file: str | None = None,
        trust: bool = False,
        warn: Callable[[str], None] | None = None,
    ) -> list[Imported]:
        """Copy files (or every file under folders) into the cache, each only after verification.

        Files are matched by sha256 (a zip archive whose hash the registry knows installs its members), else by
        name for entries whose hash is unknown (pinned now, on first use). ``as_name`` installs one file for one
        entry; with ``trust`` a hash mismatch is accepted and pinned as user-pinned after ``warn`` was called.
        """
        files = list(self._expand(paths))
        if as_name is not None:
            if len(files) != 1:
                raise UsageError(f"--as {as_name} takes exactly one file, got {len(files)}")
            return [self._import_as(files[0], as_name, file, trust, warn)]
        if trust:
            raise UsageError("--trust needs --as NAME: trust is given to one file for one model")
        return [r for src in files for r in self._import_one(src)]

    @staticmethod
    def _expand(paths: Sequence[Path]) -> Iterable[Path]:
        for p in paths:
            p = Path(p)
            if p.is_dir():
                yield from _walk_files(p)
            elif p.is_file():
                yield p
            else:
                raise UsageError(f"{p}: no such file or folder")

    def _import_one(self, src: Path) -> list[Imported]:
        size = src.stat().st_size
        # Hash only what could match: a 4 GB video in an imported folder is skipped by its size alone.
        by_size = [
            (e, g) for e in self.registry for g in e.files if size in (g.size, g.archive_size) and size > 0
        ]
        by_name = [
            (e, g)
            for e in self.registry
            for g in e.files
            if src.name == g.name or src.name in g.aliases or src.name == g.archive_name
        ]
        pinned = [k for k, pin in self.lock.all().items() if pin.size == size]
        if not by_size and not by_name and not pinned:
            return [Imported(src, "skipped", detail="matches no weights.toml entry by size or name")]
        digest = self._hashes.sha256(src)
        results: list[Imported] = []
        # 1. by hash: the registry's own hashes, then hashes pinned in weights.lock
        for e in self.registry:
            for g in e.files:
                if self._judge(e, g, digest):
                    results.append(self._install_file(e, g, src))
        if any(g.member and g.archive_sha256 == digest for e in self.registry for g in e.files):
            problems = self._extract_members(src, digest, str(src))
            action = "refused" if problems else "installed"
            results.append(Imported(src, action, detail="; ".join(problems) or "members of the archive"))
        if results:
            return results
        # 2. by name, for what has no known hash
        for e, g in by_name:
            if src.name == g.archive_name and not g.archive_sha256:
                problems = self._extract_members(src, digest, str(src))
                return [Imported(src, "refused" if problems else "installed", e.name, g.name, "; ".join(problems))]
        unknown = [(e, g) for e, g in by_name if not g.known_hash and not g.member]
        if len(unknown) > 1:
            # e.g. two entries both called backbone.pth: the export layout <entry>/<file> disambiguates
            unknown = [(e, g) for e, g in unknown if src.parent.name == e.name] or unknown
        if len(unknown) == 1:
            e, g = unknown[0]
            pin = self.lock.get(e.name, g.name)
            if pin is not None and pin.sha256 != digest:
                why = f"sha256 {digest}, expected {pin.sha256} (pinned in weights.lock)"
                return [Imported(src, "refused", e.name, g.name, why)]
            return [self._install_file(e, g, src)]
        if len(unknown) > 1:
            names = ", ".join(e.name for e, _ in unknown)
            return [Imported(src, "refused", detail=f"the name fits several models ({names}); use --as NAME")]
        if by_name:
            e, g = by_name[0]
            return [
                Imported(
                    src, "refused", e.name, g.name,
                    f"sha256 {digest} is not the expected {self._expected_text(e, g)}; a converted checkpoint can be "
                    f"installed with `facerest weights import {src} --as {e.name} --trust`",
                )
            ]
        return [Imported(src, "skipped", detail="matches no weights.toml entry by hash or name")]

    def _import_as(
        self, src: Path, name: str, file: str | None, trust: bool, warn: Callable[[str], None] | None
    ) -> Imported:
        entry = self.registry.get(name)
        f = entry.file(file)
        if f.member and file is None and src.name == f.archive_name:
            problems = self._extract_members(src, self._hashes.sha256(src), str(src))
            return Imported(src, "refused" if problems else "installed", entry.name, f.name, "; ".join(problems))
        digest = self._hashes.sha256(src)
        if self._judge(entry, f, digest) or (not f.known_hash and self.lock.get(entry.name, f.name) is None):
            return self._install_file(entry, f, src)
        expected = self._expected_text(entry, f)
        if not trust:
            raise WeightsError(
                f"{src}: sha256 mismatch for {entry.name}/{f.name}: expected {expected}, got {digest}; "
                f"if this is a checkpoint you converted or trust, add --trust to pin its hash"
            )
        if warn is not None:
            warn(
                f"TRUSTING {src} as {entry.name}/{f.name} although its sha256 {digest} is not the published "
                f"{expected}. It is pinned in {self.lock.path} as user-pinned; only PyTorch tensors are ever "
                f"loaded from it (weights_only=True), but its weights are whatever the file holds."
            )
        self.lock.pin(entry.name, f.name, digest, src.stat().st_size, "user", str(src.resolve()))
        return self._install_file(entry, f, src)

    # ----------------------------------------------------------------------------------- export, remove, list

    def export(self, dest: Path) -> list[dict]:
        """Copy every usable file to ``dest/<entry>/<file>`` with ``manifest.json`` and ``SHA256SUMS``."""
        rows: list[dict] = []
        for entry in self.registry:
            for st in self.file_statuses(entry.name):
                if not st.usable or st.path is None:
                    continue
                target = dest / entry.name / st.file
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{st.file}.", suffix=".tmp", dir=target.parent)
                os.close(fd)
                try:
                    shutil.copyfile(st.path, tmp)
                    if sha256_file(Path(tmp)) != st.sha256:
                        raise WeightsError(f"{st.path} changed while it was copied to {target}")
                    os.replace(tmp, target)
                finally:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                rows.append(
                    {
                        "entry": entry.name,
                        "file": st.file,
                        "path": f"{entry.name}/{st.file}",
                        "sha256": st.sha256,
                        "size": target.stat().st_size,
                        "state": st.state,
                        "license": entry.license,
                        "non_commercial": entry.non_commercial,
                    }
                )
        from facerest_cli import __version__

        manifest = {"facerest": __version__, "registry": self.registry.source, "files": rows}
        atomic_write_text(dest / "manifest.json", json.dumps(manifest, indent=2) + "\n")
        atomic_write_text(dest / "SHA256SUMS", "".join(f"{r['sha256']}  {r['path']}\n" for r in rows))
        return rows

    def remove(self, name: str, *, unpin: bool = False) -> list[Path]:
        """Delete the entry's files from the cache (never from extra_dirs); ``unpin`` also forgets its pins."""
        entry = self.registry.get(name)
        removed: list[Path] = []
        for f in entry.files:
            dest = self.home_path(entry.name, f.name)
            with file_lock(dest.with_name(dest.name + ".lock")):
                for p in (dest, part_path(dest)):
                    if p.is_file():
                        p.unlink()
                        removed.append(p)
            with contextlib.suppress(OSError):
                dest.with_name(dest.name + ".lock").unlink()
            if unpin:
                self.lock.unpin(entry.name, f.name)
        with contextlib.suppress(OSError):
            (self.config.home / entry.name).rmdir()
        return removed


"""The run manifest: which inputs are done, so a killed or repeated run picks up where it stopped.

``OUTPUT/manifest.jsonl`` holds a header line (format, facerest version, the options that shape outputs and their
hash; options left at their defaults and options that change no output byte are not counted) and one line per finished
input: its path, size, modification time and SHA-256, the options hash, and every output with its size and
SHA-256. A line is appended (one write, fsync) only after the input's outputs are renamed into place and its
``report.jsonl`` lines are synced, so a crash at any moment leaves the manifest describing complete work only.

``--skip-existing`` and ``--resume`` skip an input when its manifest line still holds: the input has the same size
and mtime (or, if only the mtime moved, the same SHA-256), the options hash is the same, and each output exists
with its recorded size (``--resume`` also re-hashes each output). ``report.jsonl`` is then rewritten to the
complete lines of the skipped inputs (a torn last line, or lines of an input that did not finish, are dropped) and
new lines are appended; ``summary.json`` counts skipped and new work together. A plain run starts the manifest
afresh. ``RunManifest`` also holds the output folder's lock and removes temp files left by a killed run.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Sequence

from facerest_cli import __version__
from facerest_cli.config import RunConfig
from facerest_cli.errors import UsageError
from facerest_cli.io.sinks import TEMP_PREFIX, TEMP_SUFFIX, atomic_open, durable_append
from facerest_cli.io.sources import InputItem

MANIFEST_NAME = "manifest.jsonl"
REPORT_NAME = "report.jsonl"
LOCK_NAME = ".facerest.lock"
FORMAT = 1

# Options that change no output byte: a run that differs only in these still counts earlier outputs as done.
_NEUTRAL_OPTIONS = (
    ("inputs",),
    ("quiet",),
    ("queue_size",),
    ("max_pixels",),
    ("output", "out_dir"),
    ("output", "skip_existing"),
    ("output", "resume"),
    ("output", "preserve_times"),
    ("restore", "device"),
    ("restore", "batch_size"),
    ("restore", "compile"),
    ("restore", "channels_last"),
    ("engine",),  # local or Ray, and Ray's pool sizes: the same bytes either way (tests/engines)
)


def output_options(cfg: RunConfig) -> dict:
    """The options that can change an output and are not at their default value."""
    return _changed(_without_neutral(cfg.to_dict()), _without_neutral(RunConfig(inputs=cfg.inputs).to_dict()))


def options_hash(cfg: RunConfig) -> str:
    """SHA-256 of ``output_options`` (defaults left out, so a later version that adds an option, at a default that
    changes nothing, does not make every earlier output look stale)."""
    blob = json.dumps(output_options(cfg), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _without_neutral(d: dict) -> dict:
    for keys in _NEUTRAL_OPTIONS:
        parent = d
        for k in keys[:-1]:
            parent = parent.get(k, {})
        if isinstance(parent, dict):
            parent.pop(keys[-1], None)
    return d


def _changed(d: dict, default: dict) -> dict:
    """The entries of nested dict ``d`` that differ from ``default``."""
    out = {}
    for k, v in d.items():
        ref = default.get(k, _MISSING)
        if isinstance(v, dict) and isinstance(ref, dict):
            sub = _changed(v, ref)
            if sub:
                out[k] = sub
        elif v != ref:
            out[k] = v
    return out


_MISSING = object()


def file_sha256(path: Path | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _sha256_or_none(path: Path | str) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


def remove_stale_temps(out_dir: Path) -> int:
    """Delete the ``.facerest-*.tmp`` files a killed run left under ``out_dir`` (only ours, by name)."""
    n = 0
    for dirpath, _dirs, files in os.walk(out_dir):
        for name in files:
            if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
                try:
                    os.unlink(os.path.join(dirpath, name))
                    n += 1
                except FileNotFoundError:
                    pass
    return n


def _lock_dir(out_dir: Path):
    """Exclusive lock on the output folder for the whole run: two runs writing one folder would corrupt its
    report and remove each other's temp files. Released by the OS if the process dies."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        return None
    try:
        f = open(out_dir / LOCK_NAME, "a+b")
    except OSError as e:
        raise UsageError(f"cannot write to the output folder {out_dir}: {e.strerror or e}") from None
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise UsageError(f"another facerest run is writing to {out_dir} (it holds {out_dir / LOCK_NAME}); wait for it or choose another -o") from None
    return f


@dataclass(frozen=True)
class _Stat:
    size: int
    mtime_ns: int
    atime_ns: int


def _stat(path: Path | str) -> _Stat | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _Stat(st.st_size, st.st_mtime_ns, st.st_atime_ns)


def _read_jsonl(path: Path) -> list[dict]:
    """Complete lines of a JSONL file; a torn or unparsable line is dropped."""
    out = []
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return out
    with f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
    return out


def _line(obj: dict) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


@dataclass(frozen=True)
class ResumeSummary:
    """summary.json ``resume``: how this run used the earlier one's work."""

    key: ClassVar[str] = "resume"
    mode: str
    already_done: int
    processed_again: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StaleTempsSummary:
    """summary.json ``stale_temp_files_removed``: temp files a killed run left, removed at the start."""

    key: ClassVar[str] = "stale_temp_files_removed"
    count: int

    def to_json(self) -> int:
        return self.count


class RunManifest:
    """One run's view of the output folder's manifest: ``acquire`` -> ``todo(items)`` -> ``input_done`` per
    finished input (writer thread) -> ``close(result)``."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.out_dir = Path(cfg.output.out_dir)
        self.path = self.out_dir / MANIFEST_NAME
        self.mode = "resume" if cfg.output.resume else "skip-existing" if cfg.output.skip_existing else "fresh"
        self.options_hash = options_hash(cfg)
        self.done: list[dict] = []  # manifest lines of inputs this run skips
        self.done_faces = 0
        self.reasons: Counter[str] = Counter()  # why inputs known to the manifest are processed again
        self.stale_temps = 0
        self.warnings: list[dict] = []
        self._started: dict[str, _Stat] = {}
        self._mutex = threading.Lock()
        self._fh = None
        self._lock = None

    def acquire(self) -> None:
        """Lock the output folder for this run and delete the temp files a killed run left there."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_dir(self.out_dir)
        try:
            self.stale_temps = remove_stale_temps(self.out_dir)
        except BaseException:
            self.release()
            raise

    # ------------------------------------------------------------------------------------------------ start

    def todo(self, items: Sequence[InputItem]) -> list[InputItem]:
        """The inputs to process; with --skip-existing/--resume the complete ones are left out. Rewrites the
        manifest and (when skipping) report.jsonl to the work that is kept, then opens the manifest for appending."""
        previous = self._previous() if self.mode != "fresh" else {}
        todo: list[InputItem] = []
        for it in items:
            key = os.path.abspath(it.path)
            entry = previous.get(key)
            why = "new" if entry is None else self._stale(entry, it)
            if why is None:
                self.done.append(entry)
                continue
            if entry is not None:
                self.reasons[why] += 1
            st = _stat(it.path)
            if st is not None:
                self._started[key] = st
            todo.append(it)
        header = {"facerest_manifest": FORMAT, "facerest": __version__, "options_hash": self.options_hash,
                  "options": output_options(self.cfg), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with atomic_open(self.path) as f:
            f.write(_line(header))
            for e in self.done:
                f.write(_line(e))
        if self.mode != "fresh":
            self._keep_report_lines({e["source"] for e in self.done})
        self._fh = open(self.path, "ab", buffering=0)
        return todo

    def _previous(self) -> dict[str, dict]:
        lines = _read_jsonl(self.path)
        if not lines:
            return {}
        head = lines[0]
        if head.get("facerest_manifest") != FORMAT:
            raise UsageError(f"{self.path} is not a facerest manifest of format {FORMAT}; move it away or run without --resume/--skip-existing")
        entries: dict[str, dict] = {}
        for e in lines[1:]:
            if isinstance(e.get("input"), str) and isinstance(e.get("outputs"), list):
                entries[e["input"]] = e  # a later line for the same input wins
        return entries

    def _stale(self, e: dict, it: InputItem) -> str | None:
        """Why ``e`` no longer describes a complete output of ``it`` (None: it does)."""
        if e.get("options_hash") != self.options_hash:
            return "options changed"
        if e.get("rel") != it.rel_path.as_posix() or e.get("source") is None:
            return "output location changed"
        st = _stat(it.path)
        if st is None or st.size != e.get("size"):
            return "input changed"
        if st.mtime_ns != e.get("mtime_ns"):
            if _sha256_or_none(it.path) != e.get("sha256"):
                return "input changed"
            e["mtime_ns"] = st.mtime_ns  # touched, same content
        for o in e["outputs"]:
            rel = Path(str(o.get("path", "")))
            if rel.is_absolute() or ".." in rel.parts:
                return "output missing or changed"
            p = self.out_dir / rel
            try:
                ost = os.lstat(p)
            except OSError:
                return "output missing or changed"
            if not stat.S_ISREG(ost.st_mode) or ost.st_size != o.get("size"):
                return "output missing or changed"
            if self.mode == "resume" and _sha256_or_none(p) != o.get("sha256"):
                return "output missing or changed"
        return None

    def _keep_report_lines(self, sources: set[str]) -> None:
        """report.jsonl := its complete lines whose source is kept (atomic rewrite, order preserved)."""
        report = self.out_dir / REPORT_NAME
        if not report.exists():
            if sources:
                report.touch()
            return
        counts: Counter[str] = Counter()
        with open(report, "rb") as src, atomic_open(report) as dst:
            for raw in src:
                if not raw.endswith(b"\n"):
                    break  # torn last line of a killed run
                try:
                    source = json.loads(raw).get("source")
                except (ValueError, AttributeError):
                    continue
                if source in sources:
                    dst.write(raw)
                    counts[source] += 1
        self.done_faces = sum(counts.values())

    # -------------------------------------------------------------------------------------------- progress

    def input_done(self, frame: Any, outputs: Iterable[str]) -> None:
        """Called by the pipeline's writer once an input's outputs and report lines are on disk."""
        item: InputItem = frame.item
        key = os.path.abspath(item.path)
        outputs = [str(o) for o in outputs]
        st = _stat(item.path)
        before = self._started.get(key)
        if st is None or (before is not None and (st.size, st.mtime_ns) != (before.size, before.mtime_ns)):
            with self._mutex:
                self.warnings.append({"path": str(item.path), "warning": "input changed while it was processed: "
                                      "not recorded as done (a --resume run processes it again)"})
            return
        try:
            entry = self._entry(frame, key, st, outputs)
        except OSError as e:  # an output vanished or cannot be read back: the input is simply not recorded as done
            with self._mutex:
                self.warnings.append({"path": str(item.path), "warning": f"not recorded in the manifest ({e})"})
            return
        with self._mutex:
            if self._fh is not None:
                durable_append(self._fh, _line(entry), self.path)

    def _entry(self, frame: Any, key: str, st: _Stat, outputs: list[str]) -> dict:
        item: InputItem = frame.item
        out_root = os.path.abspath(self.out_dir)
        return {
            "input": key,
            "source": str(item.path),
            "rel": item.rel_path.as_posix(),
            "kind": item.kind,
            "size": st.size,
            "mtime_ns": st.mtime_ns,
            "sha256": file_sha256(item.path),
            "options_hash": self.options_hash,
            "outputs": [
                {"path": Path(os.path.relpath(os.path.abspath(o), out_root)).as_posix(), "size": os.path.getsize(o),
                 "sha256": file_sha256(o)}
                for o in outputs
            ],
            "warnings": [*frame.image.meta.warnings, *getattr(frame.sink, "warnings", [])],
            "done_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    # ----------------------------------------------------------------------------------------------- finish

    def close(self, result: Any) -> None:
        """Count the skipped inputs into ``result`` (so summary.json describes the whole output folder) and
        release the manifest and the folder lock."""
        if self.mode != "fresh":
            result.seen += len(self.done)
            result.processed += len(self.done)
            result.faces += self.done_faces
            for e in self.done:
                result.outputs.extend(str(self.out_dir / o["path"]) for o in e["outputs"])
                result.warnings.extend({"path": e["source"], "warning": w} for w in e.get("warnings", []))
            result.add_summary(ResumeSummary(self.mode, len(self.done), dict(self.reasons)))
        result.warnings.extend(self.warnings)
        if self.stale_temps:
            result.add_summary(StaleTempsSummary(self.stale_temps))
        self.release()

    def release(self) -> None:
        with self._mutex:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None


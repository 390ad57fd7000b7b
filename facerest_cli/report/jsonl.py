"""``report.jsonl``: one JSON object per face, streamed as faces are written.

Each record is appended with a single ``write`` of a complete line followed by flush + fsync, so a crash leaves at
most a torn last line, which readers skip (``read_records``) and ``--resume`` truncates away.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from facerest_cli.types import FaceRecord


def record_to_json(rec: FaceRecord) -> str:
    return json.dumps(rec.to_json(), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class ReportWriter:
    """Appends records to ``report.jsonl``; not thread-safe (one writer thread owns it)."""

    def __init__(self, path: Path, append: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "ab" if append else "wb", buffering=0)  # unbuffered: a failed append is cut back

    def write(self, records: list[FaceRecord]) -> None:
        if not records:
            return
        data = "".join(record_to_json(r) + "\n" for r in records).encode("utf-8")
        from facerest_cli.io.sinks import durable_append  # ENOSPC -> DiskFullError, no torn line left

        durable_append(self._f, data, self.path)

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> "ReportWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Complete records of a report.jsonl; a torn (unterminated or unparsable) last line is skipped."""
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                yield json.loads(raw)
            except json.JSONDecodeError:
                continue

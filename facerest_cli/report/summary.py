"""``summary.json``: what a run saw, did, failed and skipped, written atomically at the end of the run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from facerest_cli import __version__
from facerest_cli.io.sinks import atomic_write_bytes


def build_summary(result: Any, options: dict, extra: dict | None = None) -> dict:
    d = {
        "facerest": __version__,
        "status": result.status,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "inputs_seen": result.seen,
        "processed": result.processed,
        "failed": [{"path": f.path, "error": f.error} for f in result.failed],
        "skipped": [{"path": f.path, "reason": f.error} for f in result.skipped],
        "faces": result.faces,
        "wall_time_s": round(result.wall_time_s, 3),
        "stage_seconds": {k: round(v, 3) for k, v in result.stage_seconds.items()},
        "restore_calls": result.restore_calls,
        "warnings": result.warnings,
        "options": options,
    }
    for key, s in result.summaries.items():  # typed: batch stages, resume counts, out-of-memory notes
        d[key] = s.to_json()
    if extra:
        d.update(extra)
    return d


def write_summary(path: Path, summary: dict) -> None:
    atomic_write_bytes(Path(path), (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))

"""Benchmarks behind ``facerest bench``. Each returns a JSON-able dict with a ``rows`` table for printing."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from facerest_cli.config import DetectConfig, OutputConfig, RestoreConfig, RunConfig
from facerest_cli.pipeline import STAGES
from facerest_cli.weights.cache import WeightsConfig


def bench_pipeline(path: Path, weights: WeightsConfig, *, restorer: str, detector: str, batch_size: int,
                   device: str, precision: str, repeat: int = 1) -> dict:
    """Run ``facerest run`` on ``path`` into a temporary folder; per-stage and end-to-end rates of the fastest run."""
    from facerest_cli.job import run_job

    best = None
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="facerest-bench-") as tmp:
            cfg = RunConfig(
                inputs=(Path(path),),
                detect=DetectConfig(detector=detector),
                restore=RestoreConfig(restorer=restorer, device=device, precision=precision, batch_size=batch_size),
                output=OutputConfig(out_dir=Path(tmp) / "out"),
                quiet=True,
            )
            r = run_job(cfg, weights)
        if best is None or r.wall_time_s < best.wall_time_s:
            best = r
    rows = []
    for s in STAGES:
        sec = best.stage_seconds.get(s, 0.0)
        rows.append({"stage": s, "seconds": round(sec, 4),
                     "images/s": round(best.processed / sec, 2) if sec > 0 else None,
                     "faces/s": round(best.faces / sec, 2) if sec > 0 else None})
    wall = best.wall_time_s
    rows.append({"stage": "end to end", "seconds": round(wall, 4),
                 "images/s": round(best.processed / wall, 2), "faces/s": round(best.faces / wall, 2)})
    return {"bench": "pipeline", "path": str(path), "restorer": restorer, "detector": detector, "device": device,
            "batch_size": batch_size, "images": best.processed, "faces": best.faces, "restore_calls": best.restore_calls,
            "failed": len(best.failed), "rows": rows}


def print_table(console, result: dict) -> None:
    from rich.table import Table

    title = " ".join(f"{k}={v}" for k, v in result.items() if k not in ("rows",) and not isinstance(v, (list, dict)))
    table = Table(title=title, title_justify="left")
    rows = result["rows"]
    cols = list(rows[0]) if rows else []
    for c in cols:
        table.add_column(c, justify="left" if c in ("stage", "mode", "restorer") else "right")
    for r in rows:
        table.add_row(*("-" if r.get(c) is None else str(r.get(c)) for c in cols))
    console.print(table)


def timed(fn, iters: int, sync=None) -> float:
    """Median seconds of ``iters`` calls after one warm-up."""
    fn()
    if sync:
        sync()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]

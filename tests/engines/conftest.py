"""Ray engine tests: one local Ray per test module, on 127.0.0.1 with 2 CPUs, shut down after the module."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray (2 CPUs, no dashboard) for the module; yields its GCS address (for a CLI's --ray-address)."""
    import ray

    if ray.is_initialized():  # another module's cluster left behind: never share state between modules
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False, object_store_memory=400 * 1024**2)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


NOT_COMPARED = {"report.jsonl", "summary.json", "manifest.jsonl", "report.html", "report.csv", "errors.log", ".facerest.lock"}


def output_files(out: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file a run wrote under ``out`` (outputs, thumbnails, crops), but the run's
    own records, which are compared line by line."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in NOT_COMPARED}


def report_lines(out: Path) -> list[str]:
    raw = (out / "report.jsonl").read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), "torn report line"
    return raw.decode("utf-8").splitlines()


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


# summary.json entries that describe how a run went, not what it produced: time, options (the engine differs),
# the Ray block itself, and restore_calls (the restorer is called per batch; the engines batch differently).
# "backend": how each process made its networks ready (converted, cached, eager) differs by engine, not the pixels.
SUMMARY_RUN_ONLY = {"finished_at", "wall_time_s", "stage_seconds", "options", "ray", "restore_calls", "backend"}


def summary_counts(out: Path) -> dict:
    s = summary(out)
    d = {k: v for k, v in s.items() if k not in SUMMARY_RUN_ONLY}
    for k in ("failed", "skipped", "warnings"):
        d[k] = sorted(json.dumps(x, sort_keys=True) for x in d.get(k, []))
    if isinstance(d.get("detection"), dict):  # counts compared; the time spent is not
        d["detection"] = {k: v for k, v in d["detection"].items() if k != "seconds"}
    ident = d.get("identity")
    if isinstance(ident, dict) and ident.get("flagged_faces") is not None:  # listed as faces finished
        ident["flagged_faces"] = sorted(json.dumps(x, sort_keys=True) for x in ident["flagged_faces"])
    return d


def engine(kind: str, **kw):
    from facerest_cli.config import EngineConfig

    return EngineConfig(kind=kind, **kw)


def moved(out: Path, to: Path) -> Path:
    """Rename a finished run's folder (both engines run into the same path, so records name the same outputs)."""
    os.replace(out, to)
    return to

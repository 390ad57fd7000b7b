"""Peak memory and throughput per backend, precision and batch size, each configuration in its own process.

A process's peak RSS (``ru_maxrss``) only grows, so comparing configurations needs one fresh process each:
``measure_matrix`` runs ``python -m facerest_cli.backend.memory CONFIG_JSON`` per configuration, and the child
prints one JSON line with its faces/s and its own kernel-tracked peak RSS (exact, no sampling).

    python -m facerest_cli.backend.memory --restorer gfpgan-1.4 --random-weights --batches 1,2,4,8 \\
        --configs torch:fp32,torch:bf16,openvino:fp32,openvino:bf16 --iters 3

The compiled-model cache is used (and filled by the first OpenVINO child), so conversion cost and its transient
memory are not counted: that is what a second run sees.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def peak_rss_bytes() -> int:
    """This process's peak resident memory in bytes.

    On Linux, the memory map's own high-water mark (``VmHWM``): ``ru_maxrss`` survives ``exec`` and so includes the
    parent's RSS at the ``fork`` (a probe started from a 5 GB test process would report 5 GB). Elsewhere
    ``ru_maxrss`` (macOS reports bytes)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB, macOS bytes




def measure_one(cfg: dict) -> dict:
    """In this process: build ``cfg['restorer']`` on ``cfg['backend']``/``cfg['precision']``, run ``iters``
    batches of ``cfg['batch']`` faces after one warm-up; faces/s (median batch) and peak RSS."""
    import time

    import torch

    from facerest_cli.backend.api import BackendOptions, build_network
    from facerest_cli.backend.bench import restorer_inputs
    from facerest_cli.backend.cache import CompiledCache
    from facerest_cli.backend.calls import arch_call
    from facerest_cli.backend.cpu import detect_cpu_caps
    from facerest_cli.backend.network import ModelId
    from facerest_cli.backend.wrap import TensorCall
    from facerest_cli.bench import _bench_crops
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    weights = WeightsConfig.from_env()
    store = WeightsStore(weights)
    entry = store.registry.get(cfg["restorer"])
    ac = arch_call(entry.arch)
    rss_start = peak_rss_bytes()
    if cfg.get("random_weights"):
        from facerest_cli.models.registry import build_arch

        torch.manual_seed(0)
        factory = lambda: TensorCall(build_arch(entry.arch).eval(), ac.fn, **ac.options)  # noqa: E731
        sha = "random-seed0"
        name = f"{cfg['restorer']}.random"
    else:
        from facerest_cli.weights.loader import load_model

        path = store.ensure(cfg["restorer"])
        factory = lambda: TensorCall(load_model(entry, path), ac.fn, **ac.options)  # noqa: E731
        sha = store.status(cfg["restorer"]).sha256
        name = cfg["restorer"]
    b = int(cfg["batch"])
    caps = detect_cpu_caps()
    opts = BackendOptions(cfg["backend"], cfg["precision"], "cpu", caps, max_batch=b,
                          batch_mode=cfg.get("batch_mode", "per-face"))
    cache = CompiledCache(Path(cfg["cache_root"])) if cfg.get("cache_root") else CompiledCache.for_weights_home(weights.home)
    t0 = time.perf_counter()
    net = build_network(factory, ac, ModelId(name, entry.arch, sha), opts, cache=cache)
    build_s = time.perf_counter() - t0
    batch = restorer_inputs(entry.arch, _bench_crops(b, None))
    net(*batch)  # warm-up
    iters = int(cfg.get("iters", 3))
    times = []
    cpu0 = _cpu_seconds()
    for _ in range(iters):
        t = time.perf_counter()
        net(*batch)
        times.append(time.perf_counter() - t)
    cpu = _cpu_seconds() - cpu0
    times.sort()
    sec = times[len(times) // 2] if times else float("nan")
    return {**cfg, "faces/s": round(b / sec, 3), "ms/face": round(sec / b * 1000, 1),
            "peak_rss_mb": round(peak_rss_bytes() / 2**20), "rss_before_build_mb": round(rss_start / 2**20),
            "build_s": round(build_s, 2), "build": net.info.source, "precision_run": net.precision,
            "cpu_seconds_per_face": round(cpu / (b * iters), 2) if iters else None}


def _cpu_seconds() -> float:
    # Under contention wall time lies; CPU time per face says how much work each configuration needs.
    t = os.times()
    return t.user + t.system


def measure_matrix(restorer: str, configs: list[tuple[str, str]], batches: list[int], iters: int = 3,
                   random_weights: bool = False, batch_mode: str = "per-face", timeout: float = 1800) -> list[dict]:
    """One child process per (backend, precision, batch); their result lines, in order. An OpenVINO child runs
    first, unrecorded, so that the conversion (and its transient memory) lands in the cache, not in a row."""
    rows = []
    if any(b == "openvino" for b, _ in configs):
        warm = {"restorer": restorer, "backend": "openvino", "precision": "fp32", "batch": 1, "iters": 0,
                "random_weights": random_weights}
        subprocess.run([sys.executable, "-m", "facerest_cli.backend.memory", "--one", json.dumps(warm)],
                       capture_output=True, text=True, timeout=timeout)
    for backend, precision in configs:
        for b in batches:
            cfg = {"restorer": restorer, "backend": backend, "precision": precision, "batch": b, "iters": iters,
                   "random_weights": random_weights, "batch_mode": batch_mode}
            proc = subprocess.run([sys.executable, "-m", "facerest_cli.backend.memory", "--one", json.dumps(cfg)],
                                  capture_output=True, text=True, timeout=timeout)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                rows.append({**cfg, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]})
            else:
                rows.append(json.loads(lines[-1]))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m facerest_cli.backend.memory", description=__doc__.split("\n\n")[0])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--restorer", default="gfpgan-1.4")
    ap.add_argument("--configs", default="torch:fp32,torch:bf16,openvino:fp32,openvino:bf16")
    ap.add_argument("--batches", default="1,2,4,8")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--batch-mode", default="per-face", choices=("per-face", "static", "dynamic"))
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--json", type=Path, help="Also write the rows here.")
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(json.loads(args.one))), flush=True)
        return 0
    configs = [tuple(c.split(":")) for c in args.configs.split(",") if c]
    rows = measure_matrix(args.restorer, configs, [int(b) for b in args.batches.split(",")], args.iters,
                          args.random_weights, args.batch_mode)
    cols = ("backend", "precision", "batch", "faces/s", "ms/face", "peak_rss_mb", "cpu_seconds_per_face", "error")
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r.get(c, "")) for c in cols))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

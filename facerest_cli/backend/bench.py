"""``facerest bench --stage restorer --backend torch,openvino``: backends side by side in one process.

For one restorer on real aligned crops: the official-style loop (torch fp32, one face per call) first, then
every backend x precision x batch size, each with faces/s, ms/face, the peak RSS while it ran (sampled; the
process also holds the torch module and earlier rows' leftovers: ``python -m facerest_cli.backend.memory``
isolates each configuration in its own process), the speed-up over the loop, the rel-L2 of its output against
torch fp32 on the same faces, how long building took (``build``: converted, cache or eager) and the GFLOPS it
achieves. After the table: the ceiling, from this CPU's measured dense peak per precision (``backend.roofline``):
the fewest ms per face and the largest speed-up over the loop any backend could reach here.
"""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path
from typing import Any, Callable

from facerest_cli.errors import UsageError


def current_rss() -> int | None:
    """Resident set size of this process in bytes (psutil if installed, else /proc), or None."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        pass
    try:
        import os

        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakRss:
    """``with PeakRss() as p: ...`` samples RSS every ``interval`` s; ``p.peak`` is the largest seen (bytes)."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak = current_rss() or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, current_rss() or 0)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss() or 0)


def restorer_inputs(arch: str, crops) -> tuple:
    """The restorer's inputs for ``crops`` ((N, S, S, 3) uint8 BGR): x (N,3,S,S) RGB [-1,1]; SGPN also gets a
    render (N,3,S,S) in [-1,1] and 257 coefficients, random (seed 0) but of the right shapes and ranges: speed
    does not depend on their values."""
    import numpy as np
    import torch

    x = torch.from_numpy(np.ascontiguousarray(np.stack(crops)[..., ::-1].transpose(0, 3, 1, 2))).float() / 127.5 - 1
    if arch != "sgpn":
        return (x,)
    g = torch.Generator().manual_seed(0)
    render = torch.rand(x.shape, generator=g) * 2 - 1
    coeff = torch.randn(x.shape[0], 257, generator=g) * 0.5
    return (x, render, coeff)


def _timed(fn: Callable[[], Any], iters: int) -> float:
    fn()  # warm-up: first-call allocations, OpenVINO's lazy primitive creation
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def bench_backends(weights, *, restorer: str, backends: list[str], precisions: list[str], batches: list[int],
                   iters: int, path: Path | None = None, random_weights: bool = False, caps=None,
                   cache_root: Path | None = None) -> dict:
    """Rows: the official-style loop, then each backend x precision x batch. ``precisions`` may hold ``auto``."""
    import torch

    from facerest_cli.backend.api import BackendOptions, build_network
    from facerest_cli.backend.cache import CompiledCache
    from facerest_cli.backend.calls import arch_call
    from facerest_cli.backend.cpu import detect_cpu_caps
    from facerest_cli.backend.network import ModelId
    from facerest_cli.backend.wrap import TensorCall
    from facerest_cli.bench import _bench_crops
    from facerest_cli.weights.cache import WeightsStore

    store = WeightsStore(weights)
    entry = store.registry.get(restorer)
    if entry.role != "restorer":
        raise UsageError(f"--stage restorer needs a restorer; {restorer!r} is a {entry.role}")
    ac = arch_call(entry.arch)
    caps = caps or detect_cpu_caps()
    cache = CompiledCache(cache_root) if cache_root else CompiledCache.for_weights_home(weights.home)
    if random_weights:
        from facerest_cli.models.registry import build_arch

        torch.manual_seed(0)
        net = build_arch(entry.arch).eval()
        sha = "random-seed0"
    else:
        from facerest_cli.weights.loader import load_model

        path_w = store.ensure(restorer)
        net = load_model(entry, path_w)
        sha = store.status(restorer).sha256 or "unknown"
    call = TensorCall(net, ac.fn, **ac.options)
    model = ModelId(restorer if not random_weights else f"{restorer}.random", entry.arch, sha)
    n_max = max(batches)
    inputs = restorer_inputs(entry.arch, _bench_crops(n_max, path))

    from facerest_cli.backend.roofline import ceilings, count_gflop, dense_peak
    from facerest_cli.bench import RESTORER_GFLOP

    # FLOPs of the official code where checkpoint-formats measured them, else counted on our module (sgpn).
    gflop = RESTORER_GFLOP.get(restorer) or count_gflop(call, *(x[:1] for x in inputs))
    rows: list[dict] = []
    base = build_network(call, ac, model, BackendOptions("torch", "fp32", "cpu", caps))
    ref = torch.cat([base(*(x[i : i + 1] for x in inputs)) for i in range(n_max)])
    n_loop = min(n_max, 2)
    with PeakRss() as rss:
        t = _timed(lambda: [base(*(x[i : i + 1] for x in inputs)) for i in range(n_loop)], iters) / n_loop
    loop_fps = 1.0 / t
    rows.append(_row("official loop", "torch", "fp32", 1, t, loop_fps, 0.0, rss.peak, 0.0, "eager", gflop))
    for backend in backends:
        for precision in precisions:
            for b in batches:
                gc.collect()
                opts = BackendOptions(backend, precision, "cpu", caps, max_batch=b)
                net_b = build_network(call, ac, model, opts, cache=cache)  # conversion memory is not a run's
                batch = tuple(x[:b] for x in inputs)
                with PeakRss() as rss:
                    t = _timed(lambda n=net_b: n(*batch), iters) / b
                    out = net_b(*batch)
                err = float((out.double() - ref[:b].double()).norm() / ref[:b].double().norm())
                rows.append(_row("batched", net_b.backend, net_b.precision, b, t, loop_fps, err, rss.peak,
                                 net_b.info.seconds, net_b.info.source, gflop))
                del net_b, out
    # The ceiling: this CPU's measured dense peak per precision (any backend asked), against the loop's GFLOPS.
    peak = dense_peak(backends, [p for p in ("fp32", "bf16") if p in precisions or "auto" in precisions], caps)
    ceiling = ceilings(gflop, 1.0 / loop_fps, peak)
    notes = [f"{restorer}: {gflop:.1f} GFLOP per face; the official loop runs at {gflop * loop_fps:.0f} GFLOPS"]
    notes += [f"{p} peak of this CPU (3x3 conv 256ch at 128x128, best of {', '.join(sorted(peak[p]))}): "
              f"{c['peak GFLOPS']:.0f} GFLOPS -> at best {c['min ms/face']:.0f} ms/face, "
              f"{c['max speed-up']:.2f}x the official loop" for p, c in ceiling.items()]
    return {"bench": "restorer-backends", "restorer": restorer, "device": "cpu", "cpu": caps.signature,
            "cores": caps.cores, "torch": torch.__version__, "openvino": _ov_version(), "iters": iters,
            "conversions": cache.conversions, "gflop_per_face": round(gflop, 1),
            "weights": "random (same architecture)" if random_weights else "installed", "rows": rows,
            "peak_gflops": peak, "ceiling": ceiling, "notes": notes}


def _row(mode: str, backend: str, precision: str, batch: int, sec_per_face: float, loop_fps: float, err: float,
         peak: int, build_s: float, source: str, gflop: float) -> dict:
    fps = 1.0 / sec_per_face
    return {
        "mode": mode,
        "backend": backend,
        "precision": precision,
        "batch": batch,
        "faces/s": round(fps, 3),
        "ms/face": round(sec_per_face * 1000, 1),
        "speed-up": round(fps / loop_fps, 2),
        "GFLOPS": round(gflop * fps),
        "rel-L2": float(f"{err:.2e}"),
        "peak RSS MB": round(peak / 2**20) if peak else None,
        "build s": round(build_s, 1),
        "build": source,
    }


def _ov_version() -> str | None:
    try:
        import openvino

        return openvino.__version__
    except ImportError:
        return None

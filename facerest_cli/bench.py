"""Benchmarks behind ``facerest bench``. Each returns a JSON-able dict with a ``rows`` table for printing."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from facerest_cli.config import DetectConfig, EngineConfig, OutputConfig, RestoreConfig, RunConfig
from facerest_cli.pipeline import STAGES
from facerest_cli.weights.cache import WeightsConfig


def _run_config(path: Path, tmp: Path, detector: str, restorer: str, device: str, precision: str,
                batch_size: int, **extra) -> RunConfig:
    """The run a pipeline bench times: ``path`` into ``tmp/out``, quiet, the bench's detector and restorer."""
    return RunConfig(
        inputs=(Path(path),),
        detect=DetectConfig(detector=detector),
        restore=RestoreConfig(restorer=restorer, device=device, precision=precision, batch_size=batch_size),
        output=OutputConfig(out_dir=tmp / "out"),
        quiet=True,
        **extra,
    )


def bench_pipeline(path: Path, weights: WeightsConfig, *, restorer: str, detector: str, batch_size: int,
                   device: str, precision: str, repeat: int = 1) -> dict:
    """Run ``facerest run`` on ``path`` into a temporary folder; per-stage and end-to-end rates of the fastest run."""
    from facerest_cli.job import run_job

    best = None
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="facerest-bench-") as tmp:
            cfg = _run_config(path, Path(tmp), detector, restorer, device, precision, batch_size)
            r = run_job(cfg, weights)
        if best is None or r.wall_time_s < best.wall_time_s:
            best = r
    rows = []
    # The fixed stages, then the batch stages that ran (3D prior, masks, identity...), each with its own time.
    extra_stages = [s for s in best.stage_seconds if s not in STAGES and best.stage_seconds[s] >= 1e-3]
    for s in (*STAGES, *extra_stages):
        sec = best.stage_seconds.get(s, 0.0)
        rows.append({"stage": s, "seconds": round(sec, 4),
                     "images/s": round(best.processed / sec, 2) if sec > 0 else None,
                     "faces/s": round(best.faces / sec, 2) if sec > 0 else None})
    wall = best.wall_time_s
    rows.append({"stage": "end to end", "seconds": round(wall, 4),
                 "images/s": round(best.processed / wall, 2), "faces/s": round(best.faces / wall, 2)})
    if "videos" in best.summaries:  # video inputs: frames/s per stage and end to end too
        for r in rows:
            sec = r["seconds"]
            r["frames/s"] = round(best.frames / sec, 2) if sec > 0 else None
    det = _detect_against_single_pass(path, weights, detector, device, best.stage_seconds.get("detect", 0.0), wall, rows)
    return {"bench": "pipeline", "path": str(path), "restorer": restorer, "detector": detector, "device": device,
            "batch_size": batch_size, "images": best.processed, "frames": best.frames, "faces": best.faces,
            "restore_calls": best.restore_calls, "failed": len(best.failed), **det, "rows": rows}


class _Clock:
    """Events that note when each input finished (the first output's latency shows start-up: model loading, and
    for Ray starting the actor pools, which it does inside its run; the local engine loads before its clock)."""

    def __init__(self) -> None:
        self.done: list[float] = []

    def start(self, total: int) -> None:
        pass

    def image_done(self, path: Path, n_faces: int) -> None:
        self.done.append(time.perf_counter())

    def image_failed(self, path: Path, error: str) -> None:
        pass

    def frame_done(self, path: Path, index: int, total: int | None) -> None:
        pass

    @property
    def first(self) -> float:
        return min(self.done)


def bench_engines(path: Path, weights: WeightsConfig, *, engines: list[str], restorer: str, detector: str,
                  batch_size: int, device: str, precision: str, repeat: int = 1, ray_address: str | None = None,
                  ray_prep: list[int] | None = None, extra: dict | None = None) -> dict:
    """``facerest run`` on ``path`` with each engine (Ray once per prep-actor count in ``ray_prep``; 0 = its
    default), side by side: images/s and faces/s end to end, seconds to the first output, the ratio to local.
    ``extra``: more RunConfig fields (e.g. ``prior``, ``identity``) for every run."""
    from facerest_cli.job import run_job

    runs = [("local", 0)] if "local" in engines else []
    runs += [("ray", p) for p in (ray_prep or [0])] if "ray" in engines else []
    unknown = set(engines) - {"local", "ray"}
    if unknown:
        raise ValueError(f"unknown engine(s) {', '.join(sorted(unknown))}: choose local and/or ray")
    rows, stages, ray_info = [], {}, {}
    for engine, prep in runs:
        best = clock = None
        for _ in range(repeat):
            with tempfile.TemporaryDirectory(prefix="facerest-bench-") as tmp:
                cfg = _run_config(path, Path(tmp), detector, restorer, device, precision, batch_size,
                                  engine=EngineConfig(kind=engine, ray_address=ray_address, ray_prep=prep),
                                  **(extra or {}))
                c = _Clock()
                t_start = time.perf_counter()
                r = run_job(cfg, weights, events=c)
            if best is None or r.wall_time_s < best.wall_time_s:
                best, clock = r, c
        assert best is not None and clock is not None
        name = engine if engine == "local" else f"ray, {best.summaries['ray'].pools['prep']} prep"
        wall = best.wall_time_s
        rows.append({"engine": name, "images": best.processed, "faces": best.faces, "seconds": round(wall, 3),
                     "images/s": round(best.processed / wall, 3), "faces/s": round(best.faces / wall, 3),
                     "first output s": round(clock.first - t_start, 3) if clock.done else None})
        stages[name] = {k: round(v, 3) for k, v in best.stage_seconds.items() if v}
        if engine == "ray":
            s = best.summaries["ray"]
            ray_info[name] = {"pools": s.pools, "object_store": s.object_store, "cluster": s.cluster}
    base = next((r for r in rows if r["engine"] == "local"), None)
    for r in rows:
        r["x local"] = round(r["images/s"] / base["images/s"], 2) if base is not None and base["images/s"] else None
    return {"bench": "engines", "path": str(path), "restorer": restorer, "detector": detector, "device": device,
            "batch_size": batch_size, "rows": rows, "stage_seconds": stages, "ray": ray_info}


def _detect_against_single_pass(path: Path, weights: WeightsConfig, detector: str, device: str, detect_s: float,
                                wall: float, rows: list[dict]) -> dict:
    """Detection share of end to end, and detection timed against the single YuNet pass at <= 2048 px it was
    before issue 12 (same images, same process; one row added)."""
    from facerest_cli.detect.timing import compare
    from facerest_cli.restore.runtime import resolve_device

    t = compare([Path(path)], weights, DetectConfig(detector=detector), resolve_device(device))
    if not t.images:
        return {}
    rows.insert(-1, {"stage": "detect, single pass (yunet <= 2048)", "seconds": round(t.legacy_seconds, 4),
                     "images/s": round(t.images / t.legacy_seconds, 2) if t.legacy_seconds > 0 else None, "faces/s": None})
    return {"detect_share": round(detect_s / wall, 3) if wall > 0 else None,
            "detect_vs_single_pass": round(t.ratio, 2)}


def bench_eval(path: Path, weights: WeightsConfig, *, metrics: list[str], device: str, batch_size: int) -> dict:
    """``facerest bench --stage eval PATH``: images/s of each ``facerest eval`` metric group over ``path``
    (aligned 512 faces, scored against themselves; ``facerest_cli.metrics.bench``). Groups whose weights are
    missing are listed in ``skipped`` with their fetch command."""
    from facerest_cli.metrics.bench import bench_eval as run
    from facerest_cli.restore.runtime import resolve_device
    from facerest_cli.weights.cache import WeightsStore

    res = run(path, metrics or ["all"], device=resolve_device(device), batch_size=batch_size,
              store=WeightsStore(weights))
    return {"bench": "eval", **res}


def print_table(console, result: dict) -> None:
    from rich.table import Table

    title = " ".join(f"{k}={v}" for k, v in result.items() if k not in ("rows",) and not isinstance(v, (list, dict)))
    table = Table(title=title, title_justify="left")
    rows = result["rows"]
    cols = list(rows[0]) if rows else []
    for c in cols:
        table.add_column(c, justify="left" if c in ("stage", "mode", "restorer", "metric") else "right")
    for r in rows:
        table.add_row(*("-" if r.get(c) is None else str(r.get(c)) for c in cols))
    console.print(table)
    for line in result.get("notes", ()):
        console.print(line, markup=False, highlight=False)


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


# GFLOP per 512x512 face, measured by ../shared/checkpoint-formats on the official code (torch flop counter).
RESTORER_GFLOP = {
    "gfpgan-1.4": 395.540,
    "gfpgan-1.3": 395.540,
    "codeformer": 809.769,  # at w = 0.5; 591.7 at w = 0
    "gpen-bfr-512": 276.221,
    "restoreformer-pp": 687.631,
}


def bench_restorer(weights: WeightsConfig, *, restorer: str, batches: list[int], precisions: list[str], device: str,
                   iters: int, path: Path | None = None, random_weights: bool = False,
                   backends: list[str] | None = None) -> dict:
    """The restorer alone on real aligned face crops: batched (each batch size x precision) against the
    official-style loop (one face at a time, fp32, no batching), in the same process, on the same faces.
    ``backends`` (CPU): compare torch and OpenVINO side by side instead (``facerest_cli.backend.bench``)."""
    if backends:
        from facerest_cli.backend.bench import bench_backends

        if device not in ("auto", "cpu"):
            raise ValueError("--backend compares CPU backends; use --device cpu")
        return bench_backends(weights, restorer=restorer, backends=backends, precisions=precisions,
                              batches=batches, iters=iters, path=path, random_weights=random_weights)
    import torch

    from facerest_cli.models.registry import arch_spec
    from facerest_cli.registry import Execution, from_network, names
    from facerest_cli.restore.networks import NetworkRestorer, build_network_restorer
    from facerest_cli.restore.runtime import RestoreRuntime, resolve_device
    from facerest_cli.weights.cache import WeightsStore

    dev = resolve_device(device)
    store = WeightsStore(weights)
    choices = [r for r in names("restorer", store.registry) if r != "sgpn"]
    if restorer not in choices:
        raise ValueError(f"--stage restorer benchmarks one of {', '.join(choices)}")

    def make(precision: str) -> NetworkRestorer:
        cfg = RestoreConfig(restorer=restorer, device=dev, precision=precision)
        execution = Execution(device=dev, backend="torch", precision=precision)
        if random_weights:
            spec = store.registry.get(restorer)
            net = arch_spec(spec.arch).build()
            return NetworkRestorer(from_network(restorer, store.registry, net, execution=execution), cfg)
        return build_network_restorer(cfg, store, dev, execution)

    crops = _bench_crops(max(batches), path)
    sync = torch.cuda.synchronize if dev.startswith("cuda") else None
    gflop = RESTORER_GFLOP.get(restorer)
    rows = []
    # The official-style loop: what GFPGAN/CodeFormer's own scripts do per face.
    base = make("fp32")
    rt = RestoreRuntime(base, dev)
    n_loop = min(len(crops), max(2, min(batches)))
    t = timed(lambda: [rt.restore([c], [1.0]) for c in crops[:n_loop]], iters, sync) / n_loop
    loop_fps = 1.0 / t
    rows.append(_bench_row("official loop (1 face, fp32)", 1, "fp32", t, gflop, loop_fps))
    for precision in precisions:
        r = base if precision == "fp32" else make(precision)
        rt = RestoreRuntime(r, dev)
        for b in batches:
            batch = crops[:b]
            t = timed(lambda: rt.restore(batch, [1.0] * b), iters, sync) / b
            rows.append(_bench_row("batched", b, precision, t, gflop, loop_fps))
    return {"bench": "restorer", "restorer": restorer, "device": dev, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "gflop_per_face": gflop, "iters": iters,
            "weights": "random (same architecture)" if random_weights else "installed", "rows": rows}


def _bench_row(mode: str, batch: int, precision: str, sec_per_face: float, gflop: float | None, loop_fps: float) -> dict:
    fps = 1.0 / sec_per_face
    return {
        "mode": mode,
        "batch": batch,
        "precision": precision,
        "faces/s": round(fps, 3),
        "ms/face": round(sec_per_face * 1000, 2),
        "TFLOP/s": round(fps * gflop / 1000, 3) if gflop else None,
        "speed-up": round(fps / loop_fps, 2),
    }


def _bench_crops(n: int, path: Path | None):
    """``n`` real aligned 512 crops (../shared-style cropped_faces or the given folder), repeated as needed."""
    import os

    import cv2

    folder = Path(path) if path else None
    if folder is None:
        shared = Path(os.environ.get("FACEREST_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
        folder = shared / "images" / "codeformer" / "cropped_faces"
    files = sorted(p for p in folder.glob("*.png")) if folder.is_dir() else []
    crops = [cv2.resize(cv2.imread(str(f)), (512, 512), interpolation=cv2.INTER_AREA) for f in files[:n]]
    if not crops:
        import numpy as np

        rng = np.random.default_rng(0)
        crops = [rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)]
    while len(crops) < n:
        crops += crops[: n - len(crops)]
    return crops


def bench_video(weights: WeightsConfig, *, restorer: str, batches: list[int], precisions: list[str], device: str,
                iters: int = 1, path: Path | None = None, size: tuple[int, int] = (1280, 720), frames: int = 250) -> dict:
    """Video frames/s end to end (decode, detect, track, restore, paste, encode H.264, copy audio) on a clip:
    ``path`` if it is a video, else a generated ``size`` clip (10 s at 25 fps, one face moving and scaling, AAC
    tone) animating ``path`` (a face picture) or a ../shared face. Two configurations: the ``facerest run``
    defaults, and the restorer alone (feather mask, no identity report, no 3D prior). One run each (``iters``
    is for the restorer and prior stages)."""
    import os

    from facerest_cli.config import BlendConfig, IdentityConfig, PriorConfig
    from facerest_cli.errors import FacerestError
    from facerest_cli.job import run_job
    from facerest_cli.video.probe import sniff_kind

    with tempfile.TemporaryDirectory(prefix="facerest-bench-video-") as tmp:
        clip = Path(path) if path is not None and sniff_kind(Path(path), None) == "video" else None
        if clip is None:
            from facerest_cli.video.synth import load_face, make_clip

            face_path = Path(path) if path is not None else Path(os.environ.get(
                "FACEREST_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared")) / "images" / "gfpgan" / "cropped_faces" / "Julia_Roberts_crop.png"
            clip = Path(tmp) / f"bench_{size[0]}x{size[1]}.mp4"
            make_clip(clip, load_face(face_path), size=size, frames=frames)
        configs = {
            "run defaults": {},
            "restorer only": {"blend": BlendConfig(mask="feather"), "identity": IdentityConfig(recognizer="none"),
                              "prior": PriorConfig(prior="off")},
        }
        rows: list[dict] = []
        stage_seconds: dict[str, dict] = {}  # per configuration (summed over threads: they overlap)
        for name, extra in configs.items():
            cfg = RunConfig(
                inputs=(clip,),
                restore=RestoreConfig(restorer=restorer, device=device, precision=precisions[0], batch_size=batches[0]),
                output=OutputConfig(out_dir=Path(tmp) / f"out{len(rows)}"),
                quiet=True,
                **extra,
            )
            r = run_job(cfg, weights)  # one run per configuration: a whole clip averages itself
            if r.failed:
                raise FacerestError(f"bench video: {r.failed[0].path}: {r.failed[0].error}")
            wall = r.wall_time_s
            rows.append({"config": name, "frames": r.frames, "faces": r.faces, "seconds": round(wall, 3),
                         "frames/s": round(r.frames / wall, 2), "faces/s": round(r.faces / wall, 2)})
            stage_seconds[name] = {st: round(r.stage_seconds.get(st, 0.0), 3) for st in STAGES}
        v = r.summaries["videos"].videos[0]
    return {"bench": "video", "clip": str(path or "generated"), "size": f"{v['width']}x{v['height']}", "restorer": restorer,
            "device": device, "batch_size": batches[0], "precision": precisions[0], "rows": rows,
            "stage_seconds": stage_seconds}


def bench_prior(weights: WeightsConfig, *, restorer: str, batches: list[int], precisions: list[str], device: str,
                iters: int, path: Path | None = None) -> dict:
    """The 3D prior: rendering 32 dense meshes at 512x512 per backend, and the 3DDFA regressor per batch size."""
    from facerest_cli.prior.benchmark import bench_prior as run

    return run(weights, batches=batches, device=device, iters=iters, timed=timed)

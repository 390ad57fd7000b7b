"""``facerest bench``: measured throughput, printed as a table (benchmarks are commands, not timed tests)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from facerest_cli.cli._common import reports_errors


@reports_errors
def bench(
    path: Optional[Path] = typer.Argument(None, help="Folder or files to run the whole pipeline on (stage 'pipeline'; videos add frames/s). Stage 'video': a video, or a face picture animated into a generated 720p clip (default: a ../shared face)."),
    stage: str = typer.Option("auto", help="pipeline | restorer | prior | video | eval. auto: pipeline if PATH is given, else restorer. eval: images/s of each facerest eval metric on PATH (aligned 512 faces, scored against themselves; see --metrics)."),
    restorer: str = typer.Option("none", help="Restorer to run (see facerest run --help); the restorer stage needs a network, e.g. gfpgan-1.4."),
    detector: str = typer.Option("auto", help="Detector for the pipeline stage (see facerest run --help). The pipeline stage also times it against the single YuNet pass at <= 2048 px detection was before (detect_vs_single_pass)."),
    batch: str = typer.Option("8", help="Batch size(s), comma-separated for the restorer stage, e.g. 1,8,32."),
    precision: str = typer.Option("fp32", help="fp32 | fp16 | bf16 (comma-separated to compare)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N | mps."),
    repeat: int = typer.Option(1, min=1, help="Run the pipeline this many times and keep the fastest run."),
    iters: int = typer.Option(5, min=1, help="Timed iterations per configuration (restorer / prior stages)."),
    weights_dir: List[Path] = typer.Option([], "--weights-dir", help="Read-only folder of weights searched first."),
    offline: bool = typer.Option(False, "--offline", envvar="FACEREST_OFFLINE", help="Never download weights."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the measurements as JSON."),
    random_weights: bool = typer.Option(False, "--random-weights", help="Restorer stage: use the architecture with random weights (speed does not depend on the values), so no download is needed."),
    engine: str = typer.Option("local", "--engine", help="Pipeline stage: engines to compare side by side, e.g. local,ray (images/s and faces/s end to end, seconds to the first output, the ratio to local)."),
    ray_prep: str = typer.Option("0", "--ray-prep", help="With --engine ray: prep-actor counts to run, comma-separated (e.g. 1,2 shows how decode/detect/align scale; 0 = the default for the machine)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="With --engine ray: the cluster to attach to (default: a local Ray)."),
    metrics: str = typer.Option("all", "--metrics", help="Eval stage: metric groups to time, comma-separated (psnr, ssim, lpips, lpips-vgg, lpips-alex, niqe, fid, identity, lmd, shape, all)."),
    bg_upsampler: Optional[str] = typer.Option(None, "--bg-upsampler", help="Benchmark a background upsampler instead (see facerest run --bg-upsampler): input and output megapixels/s per --device and --precision (each in a fresh process, with its peak RSS), through the streaming tiler.", rich_help_panel="Upsampler"),
    size: str = typer.Option("512x512", "--size", metavar="WxH", help="With --bg-upsampler: the generated image's size.", rich_help_panel="Upsampler"),
    scan: Optional[str] = typer.Option(None, "--scan", metavar="WxH", help="With --bg-upsampler: also the peak RSS of a large scan (e.g. 10000x10000), streamed through the tiler with a stand-in network of the same scale (the real network's per-tile memory does not grow with the scan).", rich_help_panel="Upsampler"),
    tile: int = typer.Option(256, "--tile", min=0, help="With --bg-upsampler: tile size (as facerest run --tile).", rich_help_panel="Upsampler"),
    backend: str = typer.Option("", "--backend", help="Restorer stage on CPU: backends to compare side by side, e.g. torch,openvino (precision may include auto); adds peak RSS, rel-L2 vs torch fp32, GFLOPS, and this CPU's measured peak: the fastest a face can be here."),
) -> None:
    """Measure throughput. With PATH: images/s and faces/s per pipeline stage (decode, detect, align, restore,
    paste, write) and end to end. Without: the restorer alone (faces/s, ms/face, TFLOP/s) against the
    official-style loop (one face at a time, fp32), measured side by side in this process."""
    from rich.console import Console

    from facerest_cli import bench as lib
    from facerest_cli.weights.cache import WeightsConfig

    console = Console()
    weights = WeightsConfig.from_env(weights_dirs=tuple(weights_dir), offline=offline)
    if bg_upsampler:
        from facerest_cli.upsample.bench import bench_upsampler

        dev = ("cuda" if _cuda() else "cpu") if device == "auto" else device
        configs = [f"{dev}:{p.strip()}" for p in precision.split(",") if p.strip()]
        result = bench_upsampler(bg_upsampler, configs, _wxh(size)[::-1], tile=tile, random_weights=random_weights,
                                 scan=_wxh(scan)[::-1] if scan else None)
        lib.print_table(console, result)
        if json_out is not None:
            import json

            json_out.write_text(json.dumps(result, indent=2))
        return
    mode = stage if stage != "auto" else ("pipeline" if path is not None else "restorer")
    batches = [int(b) for b in batch.split(",") if b.strip()]
    precisions = [p.strip() for p in precision.split(",") if p.strip()]
    engines = [e.strip() for e in engine.split(",") if e.strip()]
    if mode == "eval":
        if path is None:
            raise typer.BadParameter("the eval stage needs a PATH (a folder of aligned faces)")
        result = lib.bench_eval(path, weights, metrics=[m for m in metrics.split(",") if m.strip()], device=device,
                                batch_size=batches[0])
        for line in result.get("skipped", {}).values():
            console.print(line, markup=False, highlight=False)
    elif mode == "pipeline" and engines != ["local"]:
        if path is None:
            raise typer.BadParameter("the pipeline stage needs a PATH")
        result = lib.bench_engines(path, weights, engines=engines, restorer=restorer, detector=detector,
                                   batch_size=batches[0], device=device, precision=precisions[0], repeat=repeat,
                                   ray_address=ray_address, ray_prep=[int(p) for p in ray_prep.split(",") if p.strip()])
    elif mode == "pipeline":
        if path is None:
            raise typer.BadParameter("the pipeline stage needs a PATH")
        result = lib.bench_pipeline(path, weights, restorer=restorer, detector=detector, batch_size=batches[0],
                                    device=device, precision=precisions[0], repeat=repeat)
    else:
        fn = getattr(lib, f"bench_{mode}", None)
        if fn is None:
            raise typer.BadParameter(f"unknown stage {mode!r}")
        kw = {"random_weights": random_weights} if mode == "restorer" else {}
        if mode == "restorer" and backend:
            kw["backends"] = [b.strip() for b in backend.split(",") if b.strip()]
        result = fn(weights, restorer=restorer, batches=batches, precisions=precisions, device=device, iters=iters, path=path, **kw)
    lib.print_table(console, result)
    if json_out is not None:
        import json

        json_out.write_text(json.dumps(result, indent=2))


def _wxh(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"expected WxH, e.g. 1024x768; got {text!r}") from None
    return w, h


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def register(app: typer.Typer) -> None:
    app.command()(bench)

"""``facerest bench``: measured throughput, printed as a table (benchmarks are commands, not timed tests)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from facerest_cli.cli._common import reports_errors


@reports_errors
def bench(
    path: Optional[Path] = typer.Argument(None, help="Folder or files to run the whole pipeline on (stage 'pipeline'; videos add frames/s). Stage 'video': a video, or a face picture animated into a generated 720p clip (default: a ../shared face)."),
    stage: str = typer.Option("auto", help="pipeline | restorer | prior | video. auto: pipeline if PATH is given, else restorer."),
    restorer: str = typer.Option("none", help="Restorer to run (see facerest run --help); the restorer stage needs a network, e.g. gfpgan-1.4."),
    detector: str = typer.Option("yunet", help="Detector for the pipeline stage."),
    batch: str = typer.Option("8", help="Batch size(s), comma-separated for the restorer stage, e.g. 1,8,32."),
    precision: str = typer.Option("fp32", help="fp32 | fp16 | bf16 (comma-separated to compare)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N | mps."),
    repeat: int = typer.Option(1, min=1, help="Run the pipeline this many times and keep the fastest run."),
    iters: int = typer.Option(5, min=1, help="Timed iterations per configuration (restorer / prior stages)."),
    weights_dir: List[Path] = typer.Option([], "--weights-dir", help="Read-only folder of weights searched first."),
    offline: bool = typer.Option(False, "--offline", envvar="FACEREST_OFFLINE", help="Never download weights."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the measurements as JSON."),
    random_weights: bool = typer.Option(False, "--random-weights", help="Restorer stage: use the architecture with random weights (speed does not depend on the values), so no download is needed."),
) -> None:
    """Measure throughput. With PATH: images/s and faces/s per pipeline stage (decode, detect, align, restore,
    paste, write) and end to end. Without: the restorer alone (faces/s, ms/face, TFLOP/s) against the
    official-style loop (one face at a time, fp32), measured side by side in this process."""
    from rich.console import Console

    from facerest_cli import bench as lib
    from facerest_cli.weights.cache import WeightsConfig

    console = Console()
    weights = WeightsConfig.from_env(weights_dirs=tuple(weights_dir), offline=offline)
    mode = stage if stage != "auto" else ("pipeline" if path is not None else "restorer")
    batches = [int(b) for b in batch.split(",") if b.strip()]
    precisions = [p.strip() for p in precision.split(",") if p.strip()]
    if mode == "pipeline":
        if path is None:
            raise typer.BadParameter("the pipeline stage needs a PATH")
        result = lib.bench_pipeline(path, weights, restorer=restorer, detector=detector, batch_size=batches[0],
                                    device=device, precision=precisions[0], repeat=repeat)
    else:
        fn = getattr(lib, f"bench_{mode}", None)
        if fn is None:
            raise typer.BadParameter(f"unknown stage {mode!r}")
        kw = {"random_weights": random_weights} if mode == "restorer" else {}
        result = fn(weights, restorer=restorer, batches=batches, precisions=precisions, device=device, iters=iters, path=path, **kw)
    lib.print_table(console, result)
    if json_out is not None:
        import json

        json_out.write_text(json.dumps(result, indent=2))


def register(app: typer.Typer) -> None:
    app.command()(bench)

"""``facerest run``: restore every face in images (and folders of them)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from facerest_cli.cli._common import reports_errors
from facerest_cli.config import BlendConfig, DetectConfig, OutputConfig, RestoreConfig, RunConfig

_DET = "Detection"
_RES = "Restoration"
_OUT = "Output"
_WTS = "Weights"


@reports_errors
def run(
    inputs: List[Path] = typer.Argument(..., help="Image files and/or folders (walked recursively).", show_default=False),
    output: Path = typer.Option(Path("out"), "-o", "--output", help="Output folder; keeps the inputs' relative layout."),
    detector: str = typer.Option("yunet", help="yunet | retinaface-mnet | retinaface-r50 | scrfd | scrfd-10g.", rich_help_panel=_DET),
    faces: str = typer.Option("all", help="Which faces to restore: all | largest | center.", rich_help_panel=_DET),
    min_face: float = typer.Option(0.0, "--min-face", metavar="PX", help="Ignore faces smaller than PX pixels (longer box side).", rich_help_panel=_DET),
    det_size: int = typer.Option(2048, "--det-size", metavar="PX", help="Detect at most at this resolution (longer side); landmarks are mapped back.", rich_help_panel=_DET),
    aligned: bool = typer.Option(False, "--aligned", help="Inputs are already-aligned square face crops (FFHQ template); skip detection.", rich_help_panel=_DET),
    restorer: str = typer.Option("none", help="none | gfpgan-1.4 | gfpgan-1.3 | codeformer | gpen-bfr-512 | restoreformer-pp | sgpn. 'none' pastes the aligned crops back unchanged (geometry check).", rich_help_panel=_RES),
    strength: float = typer.Option(1.0, min=0.0, max=1.0, help="Blend restored and input crop: s*restored + (1-s)*input.", rich_help_panel=_RES),
    fidelity: float = typer.Option(0.5, min=0.0, max=1.0, help="CodeFormer fidelity w: 0 = most restoration, 1 = closest to the input.", rich_help_panel=_RES),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N | mps.", rich_help_panel=_RES),
    precision: str = typer.Option("fp32", help="fp32 | fp16 | bf16 (half precision needs CUDA).", rich_help_panel=_RES),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Face crops per restorer call, gathered across images.", rich_help_panel=_RES),
    upscale: int = typer.Option(1, min=1, max=8, help="Resize the whole output by N; faces are pasted at that scale.", rich_help_panel=_OUT),
    ext: Optional[str] = typer.Option(None, help="Output format (jpg, png, tif, bmp, webp). Default: the input's.", rich_help_panel=_OUT),
    suffix: str = typer.Option("", help="Append to output file names, e.g. _restored.", rich_help_panel=_OUT),
    quality: int = typer.Option(95, min=1, max=100, help="JPEG/WebP quality.", rich_help_panel=_OUT),
    save_crops: bool = typer.Option(False, "--save-crops", help="Also write aligned input and restored crops under OUTPUT/faces/.", rich_help_panel=_OUT),
    weights_dir: List[Path] = typer.Option([], "--weights-dir", help="Read-only folder of weights searched first (repeatable).", rich_help_panel=_WTS),
    offline: bool = typer.Option(False, "--offline", envvar="FACEREST_OFFLINE", help="Never download; fail fast if weights are missing.", rich_help_panel=_WTS),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar (failures are still printed)."),
) -> None:
    """Restore every face in the given images and write the results, report.jsonl and summary.json to OUTPUT.

    Exit codes: 0 all inputs done, 1 some inputs failed (the rest are done), 2 usage or configuration error.
    """
    from facerest_cli.cli._progress import RichEvents
    from facerest_cli.job import run_job
    from facerest_cli.weights.cache import WeightsConfig

    cfg = RunConfig(
        inputs=tuple(inputs),
        detect=DetectConfig(detector=detector, faces=_choice("--faces", faces, ("all", "largest", "center")), min_face=min_face, max_side=det_size),
        restore=RestoreConfig(restorer=restorer, device=device, precision=_choice("--precision", precision, ("fp32", "fp16", "bf16")),
                              batch_size=batch_size, strength=strength, fidelity=fidelity),
        blend=BlendConfig(upscale=upscale),
        output=OutputConfig(out_dir=output, ext=ext, suffix=suffix, save_crops=save_crops, jpeg_quality=quality),
        aligned=aligned,
        quiet=quiet,
    )
    weights = WeightsConfig.from_env(weights_dirs=tuple(weights_dir), offline=offline)
    with RichEvents(total=None, quiet=quiet) as events:
        result = run_job(cfg, weights, events=events)
    if not quiet:
        events.console.print(
            f"{result.processed} of {result.seen} inputs processed, {result.faces} faces, {len(result.failed)} failed "
            f"in {result.wall_time_s:.1f}s -> {output}",
            highlight=False,
        )
    raise typer.Exit(result.exit_code)


def _choice(opt: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        from facerest_cli.errors import UsageError

        raise UsageError(f"{opt} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(run)

"""``facerest prior IMAGE``: the 3D prior of every face in one image (pose, 68 landmarks, shape coefficients)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from facerest_cli.cli._common import reports_errors


@reports_errors
def prior(
    image: Path = typer.Argument(..., help="The image to analyse.", show_default=False),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object (faces with yaw/pitch/roll, landmarks68, shape, expression) instead of text."),
    render: Optional[Path] = typer.Option(None, "--render", metavar="OUT.png", help="Write the image with each face's posed 3D mesh (shaded, tinted) and 68 landmarks drawn over it."),
    regressor: str = typer.Option("auto", "--prior", help="3DMM regressor: auto (3ddfa-mb05 if installed, else 3ddfa-mb1) | 3ddfa-mb05 | 3ddfa-mb1."),
    detector: str = typer.Option("yunet", help="Face detector (see facerest run --help)."),
    renderer: str = typer.Option("auto", help="Renderer for --render: auto (pytorch3d if importable, else torch) | torch | pytorch3d."),
    weights_dir: List[Path] = typer.Option([], "--weights-dir", help="Read-only folder of weights searched first (repeatable)."),
    offline: bool = typer.Option(False, "--offline", envvar="FACEREST_OFFLINE", help="Never download; fail fast if weights are missing."),
) -> None:
    """Detect the faces in IMAGE and print, per face, the head pose (yaw, pitch, roll in degrees), the 68
    3DMM-projected landmarks (image pixels) and the 40 shape / 10 expression coefficients of the 3DDFA model."""
    import json

    from facerest_cli.config import DetectConfig, PriorConfig
    from facerest_cli.prior import analyze as lib
    from facerest_cli.prior.morphable import DenseBfm
    from facerest_cli.prior.render import get_renderer
    from facerest_cli.prior.stage import choose_regressor
    from facerest_cli.prior.tddfa import Tddfa
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    PriorConfig(prior=regressor, renderer=renderer)  # validates the choices (exit 2 with a one-line message)
    if regressor == "off":
        raise typer.BadParameter("--prior off has nothing to show")
    store = WeightsStore(WeightsConfig.from_env(weights_dirs=tuple(weights_dir), offline=offline))
    tddfa = Tddfa.load(store, choose_regressor(regressor, store))
    result = lib.analyze_image(image, DetectConfig(detector=detector), store, tddfa)
    if render is not None:
        dense = DenseBfm.load(store, tddfa.sparse)
        lib.write_png(render, lib.render_overlay(result.image.pixels, result.fits, tddfa, dense, get_renderer(renderer)))
    data = result.to_dict()
    if json_out:
        typer.echo(json.dumps(data))
        return
    typer.echo(f"{image}: {len(data['faces'])} face(s), regressor {data['regressor']}")
    for f in data["faces"]:
        typer.echo(f"face {f['face_index']}: yaw {f['yaw']:+.1f}  pitch {f['pitch']:+.1f}  roll {f['roll']:+.1f}  box {f['bbox']}")
        typer.echo("  landmarks68: " + " ".join(f"{x:.1f},{y:.1f}" for x, y in f["landmarks68"]))
        typer.echo("  shape (40): " + " ".join(f"{v:.0f}" for v in f["shape"]))
        typer.echo("  expression (10): " + " ".join(f"{v:.3f}" for v in f["expression"]))
    if render is not None:
        typer.echo(f"overlay written to {render}")


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(prior)

"""``facerest degrade INPUTS -o OUT --recipe NAME --seed S``: make low-quality faces the way papers do."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from facerest_cli.cli._common import reports_errors


@reports_errors
def degrade(
    inputs: List[Path] = typer.Argument(..., help="Images or folders (recursive): aligned 512x512 faces, or photos with --whole.", show_default=False),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder: OUT/<relative path>.png and a .json sidecar per image.", show_default=False),
    recipe: str = typer.Option(..., "--recipe", help="gfpgan | codeformer | codeformer-large | sgpn | frex | bicubic-xN (e.g. bicubic-x8).", show_default=False),
    seed: int = typer.Option(..., "--seed", help="Random seed: the same seed and inputs give byte-identical outputs.", show_default=False),
    whole: bool = typer.Option(False, "--whole", help="Degrade whole photos at their own size (default: aligned square faces, resized to 512)."),
    keep_stages: bool = typer.Option(False, "--keep-stages", help="Also write every step's image (and the exact JPEG bitstream) under OUT/.stages/."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Degrade images with a published recipe; every drawn parameter goes to the sidecar JSON of each output.

    Recipes: gfpgan (GFPGAN train_gfpgan_v1.yml), codeformer / codeformer-large (CodeFormer stage III / II
    ranges), sgpn, frex, bicubic-xN (face super-resolution). Inputs are never modified; a file that cannot be
    used is reported on one line and the others are still degraded (exit code 1).
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from facerest_cli.degrade.recipes import check_recipe
    from facerest_cli.degrade.run import DegradeOptions, degrade_files

    check_recipe(recipe)
    console = Console(stderr=True)
    opts = DegradeOptions(recipe=recipe, seed=seed, out_dir=out, whole=whole, keep_stages=keep_stages)
    with Progress(TextColumn("[bold]degrading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=quiet) as bar:
        task = bar.add_task("degrading", total=None)
        res = degrade_files(
            inputs, opts,
            on_start=lambda n: bar.update(task, total=n),
            on_done=lambda p: bar.advance(task),
            on_failure=lambda line: console.print(f"[red]failed[/red] {escape(line)}", highlight=False, soft_wrap=True),
        )
    typer.echo(f"{len(res.written)} degraded with --recipe {recipe} --seed {seed}, {len(res.failed)} failed -> {out}")
    if res.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(degrade)

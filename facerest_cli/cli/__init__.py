"""The ``facerest`` command. One Typer sub-app or command per file; each parses options and hands off."""

from __future__ import annotations

import typer

from facerest_cli import __version__

app = typer.Typer(
    name="facerest",
    help="Restore faces in old photos and film, in batch: detect, align, 3D prior, restore, paste back, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"facerest {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """facerest: batch face restoration."""


def _register() -> None:
    # Imported here, not at module top, so each sub-app stays in its own file; none imports torch at import time.
    from facerest_cli.cli import weights as weights_cli

    app.add_typer(weights_cli.app, name="weights")
    for name in ("run", "bench", "report", "identity", "prior", "doctor", "eval", "degrade", "cache"):
        try:
            mod = __import__(f"facerest_cli.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name != f"facerest_cli.cli.{name}":
                raise
            continue
        mod.register(app)


_register()


def main() -> None:
    app()

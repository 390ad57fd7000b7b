"""``facerest weights ...``: list, fetch, verify, import, export, path, remove (issue: weights registry)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Manage model weights: list, fetch, verify, import, export.", no_args_is_help=True)
